"""Hostile bytes: random, truncated, mutated, oversized and ill-typed frames raise only RemoteProtocolError.

Hypothesis examples grow with the profile (CAMMESH_PROFILE=long); the seeded
mutation sweep grows with ``long_profile()`` as well.
"""

from __future__ import annotations

import random
import struct

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from protocol.codec import FrameDecoder, decode_frame, encode
from protocol.errors import RemoteProtocolError
from protocol.messages import BY_TAG, PROTOCOL_VERSION, Limits, Message
from tests.conftest import long_profile
from tests.protocol.message_strategies import messages, wire_values

SWEEP = 50_000 if long_profile() else 3_000


def drain(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[Message]:
    """Feed ``data`` in slices and drain; return the messages, or stop at the protocol error."""
    out: list[Message] = []
    start = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            decoder.feed(data[start:cut])
            start = cut
            out.extend(decoder)
    except RemoteProtocolError:
        pass
    return out


def check_body(body: bytes) -> None:
    """decode_frame of any bytes is a valid message or a RemoteProtocolError, nothing else."""
    try:
        msg = decode_frame(body)
    except RemoteProtocolError as exc:
        assert exc.code
        return
    # What decodes must be a real message that encodes back to an equivalent frame.
    assert decode_frame(encode(msg)[4:]) == msg


@given(st.binary(max_size=512), st.lists(st.integers(0, 512), max_size=6))
def test_random_streams_raise_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    drain(FrameDecoder(), data, [c for c in cuts if c <= len(data)])


@given(st.binary(max_size=300))
def test_random_bodies_raise_only_protocol_errors(body: bytes) -> None:
    check_body(body)


@given(st.binary(max_size=64))
def test_random_bodies_behind_a_msgpack_map_header_raise_only_protocol_errors(tail: bytes) -> None:
    check_body(b"\x83\xa1t" + tail)


@given(messages, st.data())
def test_truncated_frames_never_yield_a_message_or_an_error(
    msg: Message, data: st.DataObject
) -> None:
    frame = encode(msg)
    cut = data.draw(st.integers(0, len(frame) - 1))
    decoder = FrameDecoder()
    decoder.feed(frame[:cut])
    assert decoder.next_message() is None


@given(messages, st.data())
def test_truncated_bodies_with_a_fixed_prefix_raise_only_protocol_errors(
    msg: Message, data: st.DataObject
) -> None:
    body = encode(msg)[4:]
    cut = data.draw(st.integers(0, len(body) - 1))
    check_body(body[:cut])


@given(messages, st.data())
def test_mutated_frames_raise_only_protocol_errors(msg: Message, data: st.DataObject) -> None:
    frame = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        at = data.draw(st.integers(0, len(frame) - 1))
        if kind == "flip":
            frame[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            frame[at] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif len(frame) > 1:
            del frame[at]
    drain(FrameDecoder(), bytes(frame), [])
    check_body(bytes(frame[4:]))


@given(st.sampled_from(sorted(BY_TAG)), st.data())
def test_ill_typed_fields_raise_only_protocol_errors(tag: str, data: st.DataObject) -> None:
    """A well-formed map of the right type and version, with hostile values in its fields."""
    cls = BY_TAG[tag]
    names = [n for n in cls.__dataclass_fields__ if n != "TAG"]
    body: dict[str, object] = {"t": tag, "v": PROTOCOL_VERSION}
    for name in names:
        body[name] = data.draw(wire_values, label=name)
    if data.draw(st.booleans()):
        body[data.draw(st.text(max_size=10))] = data.draw(wire_values)
    check_body(msgpack.packb(body))


@given(messages, st.integers(Limits.MAX_FRAME + 1, 2**32 - 1))
def test_oversized_frames_raise_frame_too_large_before_their_body(
    msg: Message, length: int
) -> None:
    decoder = FrameDecoder()
    decoder.feed(encode(msg))
    try:
        decoder.feed(struct.pack(">I", length) + b"\x00" * 1000)
    except RemoteProtocolError as exc:
        assert exc.code == "frame-too-large"
    else:
        raise AssertionError("an oversized length prefix was accepted")
    assert decoder.buffered == 0


def test_seeded_mutation_sweep() -> None:
    """Many cheap mutations of real frames, beyond what Hypothesis explores per test."""
    rng = random.Random(1234)
    samples = _sample_messages(rng)
    assert {type(m) for m in samples} == set(BY_TAG.values()), "sweep every message type"
    frames = [encode(m) for m in samples]
    for i in range(SWEEP):
        frame = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(frame))
            op = rng.randrange(4)
            if op == 0:
                frame[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                frame[at] = rng.choice((0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xC4, 0xD9, 0xDE, 0xFF))
            elif op == 2:
                frame[at:at] = rng.randbytes(rng.randint(1, 9))
            elif len(frame) > 5:
                del frame[at : at + rng.randint(1, 4)]
        if i % 2:
            check_body(bytes(frame[4:]))
        else:
            cuts = [rng.randrange(len(frame) + 1) for _ in range(rng.randint(0, 3))]
            drain(FrameDecoder(), bytes(frame), cuts)


def _sample_messages(rng: random.Random) -> list[Message]:
    """One hand-made message of every type, with values near their limits."""
    from protocol import messages as m

    ident = "".join(rng.choice("0123456789abcdef") for _ in range(64))
    return [
        m.Hello(
            device_id=ident,
            name="cam-a",
            role=m.Role.CAMERA,
            version=PROTOCOL_VERSION,
            capabilities=("encrypt", "smaller"),
            capacity=2**40,
            free=2**39,
        ),
        m.Catalog(seen={ident: 5, "0" * 64: 2**62}),
        m.ThumbnailOffer(
            image_id=ident,
            origin=ident,
            seq=3,
            name="IMG_0003.JPG",
            size=123456,
            mime="image/jpeg",
            capture_time=1.5e9,
            metadata={"Make": "Canon", "ISO": 400, "FNumber": 2.8, "Flash": False, "Lens": None},
            thumbnail=rng.randbytes(300),
            has_original=True,
            wrapped_key=rng.randbytes(32),
        ),
        m.RequestOriginal(image_id=ident, urgent=False, offset=10, max_side=1024, quality=80),
        m.RefuseOriginal(image_id=ident),
        m.OriginalHeader(
            image_id=ident,
            purpose=m.Purpose.DISPERSE,
            size=1000,
            digest=ident,
            offset=500,
            destination=ident,
            owner=ident,
        ),
        m.Chunk(image_id=ident, purpose=m.Purpose.SYNC, offset=0, data=rng.randbytes(600)),
        m.OriginalComplete(image_id=ident, purpose=m.Purpose.COLLECT, digest=ident),
        m.TransferFailed(image_id=ident, purpose=m.Purpose.READOUT, reason="holder offline"),
        m.DisperseRequest(image_id=ident, size=2**32, owner=ident),
        m.DisperseAccept(image_id=ident, reservation=2**32, offset=0),
        m.DisperseReject(image_id=ident, reason="card full", free=12),
        m.Stored(image_id=ident, digest=ident),
        m.Collect(image_id=ident, offset=7),
        m.ReadOut(image_id=ident, offset=0),
        m.Release(image_id=ident),
        m.Ping(nonce=2**63 - 1),
        m.Pong(nonce=0),
        m.Goodbye(reason="shutting down"),
        m.Error(code="bad-field", message="thumbnail too large"),
        m.Strip(
            image_id=ident,
            times=(0.0, 10.0, 12.5),
            offsets=(48, None, 2**32),
            kinds=("interval", "interval", "scene"),
            jpegs=(rng.randbytes(200), rng.randbytes(100), rng.randbytes(50)),
        ),
        m.Marked(
            image_id=ident,
            fields=("rating", "color", "tagged", "caption", "keywords"),
            values=(5, None, True, "Goal\n" * 400, ("k" * 256,) * 64),
            times=(1.0, 2.5, 1e9, -3.0, 0.0),
            devices=(ident,) * 5,
        ),
        m.MarksDigest(buckets=rng.randbytes(m.Limits.MARK_DIGEST)),
        m.WantStrips(image_ids=(ident,) * Limits.MAX_WANTED_STRIPS),
    ]
