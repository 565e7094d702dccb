"""The codec: every message survives a round trip, in one frame or split anywhere; the wire format is pinned."""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
import struct
import types
from collections.abc import Mapping
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
    Catalog,
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


# --- frames as msgpack packs them, and the thumbnail offer's edges ----------------------


def expected_map(msg: Message) -> dict[str, Any]:
    """The map a frame for ``msg`` must hold: tag, version, then every field."""
    body: dict[str, Any] = {"t": msg.TAG, "v": PROTOCOL_VERSION}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):  # and a tuple in it (a Marked's keywords)
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        elif isinstance(value, memoryview | bytearray):
            value = bytes(value)
        body[f.name] = value
    return body


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_every_frame_is_byte_for_byte_what_msgpack_packs_from_its_map(
    cls: type[Message], data: st.DataObject
) -> None:
    # msgspec packs the frames and msgpack reads them (pairing, the simulator's peeks,
    # other implementations): the bytes must be msgpack's own packing of the map, in
    # the frame's key order, for every message type.
    msg = data.draw(STRATEGIES[cls])
    body = encode(msg)[4:]
    decoded = msgpack.unpackb(body)
    assert decoded == expected_map(msg)
    assert list(decoded)[:2] == ["t", "v"]
    assert msgpack.packb(decoded) == body


def test_a_mapping_that_is_not_a_dict_encodes_like_the_dict() -> None:
    metadata = {"Make": "Canon", "ISO": 400}
    offer = ThumbnailOffer(
        image_id=A,
        origin=B,
        seq=1,
        name="x",
        size=1,
        mime="image/jpeg",
        capture_time=None,
        metadata=metadata,
        thumbnail=b"jpeg",
        has_original=True,
    )
    as_proxy = dataclasses.replace(offer, metadata=types.MappingProxyType(metadata))
    assert encode(as_proxy) == encode(offer)
    assert decode_one(encode(as_proxy)) == offer
    catalog = Catalog(seen=types.MappingProxyType({A: 3}))
    assert decode_one(encode(catalog)) == Catalog(seen={A: 3})


def test_a_failed_encode_leaves_the_next_frame_intact() -> None:
    # An encode that fails half-way must leave nothing behind for the next frame.
    good = Chunk(image_id=A, purpose=Purpose.SYNC, offset=0, data=b"payload")
    broken = Ping(nonce=1)
    object.__setattr__(broken, "nonce", 2**70)  # mutated behind the message's back
    for _ in range(3):
        with pytest.raises(LocalProtocolError):
            encode(broken)
        assert decode_one(encode(good)) == good


def offer_fields(**changes: object) -> dict[str, object]:
    fields = {
        "image_id": A,
        "origin": B,
        "seq": 1,
        "name": "IMG_0001.JPG",
        "size": 1,
        "mime": "image/jpeg",
        "capture_time": 1.5,
        "metadata": {"ISO": 400},
        "thumbnail": b"jpeg",
        "has_original": True,
        "wrapped_key": None,
    }
    fields.update(changes)
    return fields


class _Text(str):
    """A str subclass: built here, text fields take it as text."""


OFFER_EDGES: list[tuple[str, object, bool]] = [
    # (field, value, valid): values at and just past each limit, and unusual types.
    ("image_id", "0" * 64, True),
    ("image_id", A.upper(), False),
    ("image_id", A[:-1], False),
    ("image_id", A + "\n", False),
    ("image_id", _Text(A), True),
    ("origin", "g" * 64, False),
    ("seq", 2**62, True),
    ("seq", 2**62 + 1, False),
    ("seq", 0, False),
    ("seq", True, False),
    ("name", "n" * Limits.MAX_NAME, True),
    ("name", "n" * (Limits.MAX_NAME + 1), False),
    ("name", _Text("n"), True),
    ("size", Limits.MAX_ORIGINAL, True),
    ("size", Limits.MAX_ORIGINAL + 1, False),
    ("size", -1, False),
    ("mime", "m" * 128, True),
    ("mime", "m" * 129, False),
    ("capture_time", None, True),
    ("capture_time", 1e308, True),
    ("capture_time", math.inf, False),
    ("capture_time", -math.inf, False),
    ("capture_time", math.nan, False),
    ("capture_time", 1, False),
    ("thumbnail", b"", True),
    ("thumbnail", bytes(Limits.MAX_THUMBNAIL), True),
    ("thumbnail", bytes(Limits.MAX_THUMBNAIL + 1), False),
    ("thumbnail", bytearray(b"jpeg"), True),
    ("thumbnail", memoryview(b"jpeg"), True),
    ("thumbnail", "jpeg", False),
    ("has_original", 1, False),
    ("wrapped_key", b"k", True),
    ("wrapped_key", b"k" * Limits.MAX_WRAPPED_KEY, True),
    ("wrapped_key", b"k" * (Limits.MAX_WRAPPED_KEY + 1), False),
    ("wrapped_key", b"", False),
    ("wrapped_key", bytearray(b"k"), True),
    ("metadata", {"k": "x" * Limits.MAX_METADATA_VALUE}, True),
    ("metadata", {"k": "x" * (Limits.MAX_METADATA_VALUE + 1)}, False),
    ("metadata", {_Text("k"): 1}, True),
    ("metadata", {"": 1}, False),
    ("metadata", {"k": math.nan}, False),
]


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    OFFER_EDGES,
    ids=lambda v: repr(v)[:24] if isinstance(v, str) else None,
)
def test_thumbnail_offer_edges_are_judged_by_the_field_checks(
    field: str, value: object, valid: bool
) -> None:
    if valid:
        offer = ThumbnailOffer(**offer_fields(**{field: value}))  # type: ignore[arg-type]
        assert getattr(offer, field) == value
        return
    with pytest.raises(LocalProtocolError) as info:
        ThumbnailOffer(**offer_fields(**{field: value}))  # type: ignore[arg-type]
    assert f"ThumbnailOffer.{field}" in str(info.value)
    if isinstance(
        value, str | int | float | bytes | dict
    ):  # what msgpack can carry: off the wire too
        wire = {"t": "thumb", "v": PROTOCOL_VERSION, **offer_fields(**{field: value})}
        if field == "capture_time" and type(value) is int:
            # The wire's one leniency: an integer where a float is due arrives as that float.
            assert decode_one(frame_of(wire)).capture_time == float(value)
            assert type(decode_one(frame_of(wire)).capture_time) is float
            return
        # msgpack's own limits may refuse an overlong value before the field checks do.
        assert remote_code(frame_of(wire)) in ("bad-field", "bad-msgpack")


def _outcome(fields: dict[str, object]) -> str:
    try:
        ThumbnailOffer(**fields)  # type: ignore[arg-type]
    except LocalProtocolError as exc:
        return str(exc)
    return "ok"


def test_text_held_in_a_str_subclass_travels_as_its_text() -> None:
    # msgspec packs only exact str; what a message accepts, its frame must carry.
    offer = ThumbnailOffer(
        **offer_fields(  # type: ignore[arg-type]
            image_id=_Text(A), name=_Text("IMG.JPG"), metadata={_Text("Make"): _Text("Canon")}
        )
    )
    assert decode_one(encode(offer)) == offer
    hello = Hello(
        device_id=A,
        name="cam",
        role=Role.CAMERA,
        version=PROTOCOL_VERSION,
        capabilities=(_Text("sealed"),),
        capacity=1,
        free=1,
    )
    assert decode_one(encode(hello)) == hello


def test_a_str_subclass_is_judged_as_the_str_it_holds() -> None:
    # Every edge and pair of edges, with the image id as a str and as a str subclass:
    # the same verdict, down to the field named first.
    for first, second in itertools.combinations_with_replacement(OFFER_EDGES, 2):
        fields = offer_fields(**dict([first[:2], second[:2]]))
        assert type(fields["image_id"]) in (str, _Text)
        long_way = {**fields, "image_id": _Text(fields["image_id"])}
        assert _outcome(fields) == _outcome(long_way), (first, second)


# --- whole frames fed one at a time, as pipes and the simulator feed them ----------------


def test_a_whole_frame_waiting_unread_stays_ahead_of_what_is_fed_after_it() -> None:
    first, second, third = Ping(nonce=1), Ping(nonce=2), Ping(nonce=3)
    decoder = FrameDecoder()
    decoder.feed(encode(first))
    assert decoder.buffered == len(encode(first))
    decoder.feed(encode(second))  # whole again, while the first is unread
    decoder.feed(encode(third)[:3])  # and the start of another
    assert decoder.buffered == len(encode(first)) + len(encode(second)) + 3
    assert decoder.next_message() == first
    assert decoder.next_message() == second
    assert decoder.next_message() is None
    decoder.feed(encode(third)[3:])
    assert list(decoder) == [third]
    assert decoder.buffered == 0


def test_whole_frames_fed_one_at_a_time_decode_in_order() -> None:
    sent = [Ping(nonce=n) for n in range(5)]
    decoder = FrameDecoder()
    got = []
    for msg in sent:
        decoder.feed(encode(msg))
        got.append(decoder.next_message())
        assert decoder.buffered == 0
    assert got == sent


def test_a_frame_in_a_mutable_buffer_is_copied_before_feed_returns() -> None:
    chunk = Chunk(image_id=A, purpose=Purpose.SYNC, offset=0, data=b"payload")
    for kind in (bytearray, lambda b: memoryview(bytearray(b))):
        buffer = kind(encode(chunk))
        decoder = FrameDecoder()
        decoder.feed(buffer)
        buffer[-7:] = b"changed"  # the caller reuses its receive buffer
        assert decoder.next_message() == chunk


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb(GOOD) + b"\x00",  # the value ends before its frame does
        msgpack.packb(GOOD)[:-1] + b"\xc1",  # a reserved byte where the last value goes
        msgpack.packb({**GOOD, "nonce": "a" * 10})[:-3],  # the last value runs past the frame
    ],
    ids=["extra-data", "reserved-byte", "truncated"],
)
def test_a_malformed_whole_frame_breaks_the_decoder(body: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message()
    assert info.value.code == "bad-msgpack"
    assert decoder.buffered == 0
    with pytest.raises(RemoteProtocolError):
        decoder.feed(encode(Ping(nonce=1)))


def test_a_whole_frame_past_the_limit_is_refused_at_feed() -> None:
    body = bytes(Limits.MAX_FRAME + 1)
    decoder = FrameDecoder()
    with pytest.raises(RemoteProtocolError) as info:
        decoder.feed(struct.pack(">I", len(body)) + body)
    assert info.value.code == "frame-too-large"
    assert decoder.buffered == 0
