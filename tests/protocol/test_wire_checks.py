"""msgspec's checks of frames off the wire judge every field as the message's own checks do.

A frame takes one of two ways (protocol/codec.py): msgspec checks it in C against
the limits its fields declare, and only a frame it refuses is judged again, field
by field, by the message's own checks (protocol/fields.py).  Both read the same
declarations; these tests hold them to the same verdicts, on values at and past
every declared limit and on anything msgpack can carry.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import RemoteProtocolError
from protocol.fields import base_type, limits, union_options
from protocol.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Limits,
    Message,
    Ping,
    field_types,
)
from tests.protocol.message_strategies import STRATEGIES, wire_values
from tests.protocol.test_messages import VALID


def edges(hint: Any) -> list[object]:
    """Values at and just past each limit ``hint`` declares, and values of other kinds."""
    _, meta = limits(hint)
    out: list[object] = [None, True, 0, 1.5, "", b"", [], {}]
    for bound in (meta.ge, meta.le):
        if isinstance(bound, int):
            out += [bound - 1, bound, bound + 1]
        elif isinstance(bound, float):
            out += [bound, math.inf, -math.inf, math.nan]
    for length in (meta.min_length, meta.max_length):
        if length is not None:
            for n in (length - 1, length, length + 1):
                if n >= 0:
                    out += ["a" * n, b"a" * n, ["a"] * n, {f"{i:064x}": 1 for i in range(n)}]
    if meta.pattern:
        out += ["a" * 64, "A" * 64, "a" * 63 + "\n", "g" * 64, "0" * 64]
    for option in union_options(hint):
        out += edges(option)
    return out


def verdict(body: bytes) -> Message | str:
    """The fast way's verdict on a frame body: the message, or the error's code."""
    try:
        return codec.decode_frame(body)
    except RemoteProtocolError as exc:
        return exc.code


def exact_verdict(body: bytes) -> Message | str:
    """The field-by-field way's verdict, which alone judged frames before msgspec."""
    if len(body) > Limits.MAX_FRAME:
        return "frame-too-large"
    try:
        return codec._message(msgpack.unpackb(body, **codec._UNPACK_LIMITS))
    except RemoteProtocolError as exc:
        return exc.code
    except (ValueError, msgpack.UnpackException):
        return "bad-msgpack"


def assert_same_verdict(body: bytes) -> None:
    fast, exact = verdict(body), exact_verdict(body)
    if isinstance(exact, Message) or isinstance(fast, str):
        assert fast == exact
        return
    # The one leniency of the wire: msgspec takes an integer where a float is due, as
    # that float.  What it lets through must still be a message its own checks accept.
    assert exact == "bad-field", (fast, exact)
    floats = [name for name, hint in field_types(type(fast)).items() if float in _kinds(hint)]
    raw = msgpack.unpackb(body)
    assert any(type(raw[name]) is int for name in floats), (fast, raw)
    rebuilt = type(fast)(**{name: getattr(fast, name) for name in field_types(type(fast))})
    assert rebuilt == fast


def _kinds(hint: Any) -> set[Any]:
    return {base_type(option) for option in union_options(hint) or (hint,)}


def wire_map(msg: Message) -> dict[str, Any]:
    body: dict[str, Any] = msgpack.unpackb(codec.encode(msg)[4:])
    return body


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_a_field_at_or_past_its_limits_gets_one_verdict(
    cls: type[Message], data: st.DataObject
) -> None:
    body = wire_map(data.draw(STRATEGIES[cls]))
    types = field_types(cls)
    name = data.draw(st.sampled_from(sorted(types)))
    body[name] = data.draw(st.sampled_from(edges(types[name])) | wire_values, label=name)
    assert_same_verdict(msgpack.packb(body))


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_a_frame_with_keys_missing_added_or_changed_gets_one_verdict(
    cls: type[Message], data: st.DataObject
) -> None:
    body = wire_map(data.draw(STRATEGIES[cls]))
    change = data.draw(st.sampled_from(["drop", "add", "tag", "version"]))
    if change == "drop":
        del body[data.draw(st.sampled_from(sorted(body)))]
    elif change == "add":
        body[data.draw(st.text(max_size=8))] = data.draw(wire_values)
    elif change == "tag":
        body["t"] = data.draw(st.sampled_from([m.TAG for m in MESSAGE_TYPES]) | wire_values)
    else:
        body["v"] = data.draw(st.integers(-2, 3) | wire_values)
    assert_same_verdict(msgpack.packb(body))


def test_every_declared_edge_of_every_field_gets_one_verdict() -> None:
    # The edges themselves, every one, beside Hypothesis's draws above.
    for cls in MESSAGE_TYPES:
        valid = wire_map(cls(**VALID[cls]))
        for name, hint in field_types(cls).items():
            for value in edges(hint):
                assert_same_verdict(msgpack.packb({**valid, name: value}))


def test_a_key_given_twice_is_checked_each_time_and_counts_with_its_last_value() -> None:
    # msgspec checks every value as it reads it and keeps a repeated key's last one; the
    # exact way refused such a frame for its count of keys.  Nothing unchecked passes.
    ping = {"t": "ping", "v": PROTOCOL_VERSION}

    def with_nonce_twice(first: object, last: object) -> bytes:
        entries = [*ping.items(), ("nonce", first), ("nonce", last)]
        return bytes([0x80 | len(entries)]) + b"".join(
            msgpack.packb(key) + msgpack.packb(value) for key, value in entries
        )

    assert verdict(with_nonce_twice(3, 7)) == Ping(nonce=7)
    assert verdict(with_nonce_twice(-1, 7)) == "bad-field"
    assert verdict(with_nonce_twice(7, -1)) == "bad-field"
    assert verdict(with_nonce_twice(7, "x")) == "bad-field"


def test_values_nested_deep_before_the_tag_are_a_protocol_error() -> None:
    # msgspec recurses to skip what comes before a "t" that is not the first key; a
    # thousand nested arrays there once made it raise RecursionError past the decoder,
    # which then dropped the frame without breaking.
    body = b"\x82\xa1x" + b"\x91" * 1000 + b"\xc0" + msgpack.packb("t") + msgpack.packb("ping")
    assert verdict(body) == "bad-version"  # the exact way reads it: a ping with no "v"
    decoder = codec.FrameDecoder()
    decoder.feed(len(body).to_bytes(4, "big") + body)
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()  # and stays broken
