"""Per-picture keys (storage/sealing.py over protocol/sealing.py): sealing round-trips, every
change to sealed bytes or a wrapped key is caught, and keys open only for their recipient."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519
from hypothesis import given
from hypothesis import strategies as st

from protocol.sealing import (
    RECORD,
    SEALED_RECORD,
    TAG,
    SealingError,
    plain_size,
    record_span,
    records,
    sealed_size,
)
from storage.sealing import WRAPPED_SIZE, Sealing

IMAGE = hashlib.sha256(b"a picture").hexdigest()
OTHER = hashlib.sha256(b"another picture").hexdigest()


@pytest.fixture(scope="module")
def owner() -> Sealing:
    return Sealing(x25519.X25519PrivateKey.generate())


@pytest.fixture(scope="module")
def desk() -> Sealing:
    return Sealing(x25519.X25519PrivateKey.generate())


SIZES = st.one_of(st.integers(0, 3 * RECORD + 5),
                  st.sampled_from([0, 1, RECORD - 1, RECORD, RECORD + 1, 2 * RECORD]))


@given(size=SIZES)
def test_layout_arithmetic_is_consistent(size: int) -> None:
    sealed = sealed_size(size)
    assert plain_size(sealed) == size
    spans = [record_span(i, size) for i in range(records(size))]
    assert spans[0][0] == 0 and sum(length for _, length in spans) == sealed
    for (offset, length), (next_offset, _) in itertools.pairwise(spans):
        assert offset + length == next_offset and length == SEALED_RECORD


@given(sealed=st.integers(0, 4 * SEALED_RECORD))
def test_plain_size_refuses_impossible_sizes(sealed: int) -> None:
    try:
        size = plain_size(sealed)
    except ValueError:
        assert all(sealed_size(s) != sealed for s in range(max(0, sealed - 4 * TAG - 1), sealed + 1))
    else:
        assert sealed_size(size) == sealed


@given(data=st.binary(max_size=2 * RECORD + 3) | st.sampled_from([b"", b"x" * RECORD]))
def test_seal_then_open_gives_the_original(owner: Sealing, data: bytes) -> None:
    key = owner.new_key()
    sealed = owner.seal(key, IMAGE, data)
    assert len(sealed) == sealed_size(len(data))
    assert owner.open(key, IMAGE, sealed) == data
    # Streaming by records gives the same bytes as sealing at once.
    count = records(len(data))
    pieces = [owner.seal_record(key, IMAGE, i, data[i * RECORD:(i + 1) * RECORD],
                                last=i == count - 1) for i in range(count)]
    assert b"".join(pieces) == sealed
    assert b"".join(owner.open_record(key, IMAGE, i, p, last=i == count - 1)
                    for i, p in enumerate(pieces)) == data


def test_sealed_bytes_show_no_run_of_the_original(owner: Sealing) -> None:
    data = bytes(range(256)) * 1000  # a distinctive pattern
    sealed = owner.seal(owner.new_key(), IMAGE, data)
    for start in range(0, len(data) - 16, 4099):
        assert data[start:start + 16] not in sealed


@given(position=st.integers(0, sealed_size(2 * RECORD + 10) - 1), bit=st.integers(0, 7))
def test_any_changed_bit_is_caught(owner: Sealing, position: int, bit: int) -> None:
    key = owner.new_key()
    sealed = bytearray(owner.seal(key, IMAGE, b"\x5a" * (2 * RECORD + 10)))
    sealed[position] ^= 1 << bit
    with pytest.raises(SealingError):
        owner.open(key, IMAGE, bytes(sealed))


def test_truncation_reordering_and_another_picture_are_caught(owner: Sealing) -> None:
    key = owner.new_key()
    data = bytes(range(256)) * (3 * RECORD // 256)
    sealed = owner.seal(key, IMAGE, data)
    with pytest.raises(SealingError):  # cut at a record boundary: the new last is not "last"
        owner.open(key, IMAGE, sealed[:2 * SEALED_RECORD])
    first, second = sealed[:SEALED_RECORD], sealed[SEALED_RECORD:2 * SEALED_RECORD]
    with pytest.raises(SealingError):
        owner.open(key, IMAGE, second + first + sealed[2 * SEALED_RECORD:])
    with pytest.raises(SealingError):
        owner.open(key, OTHER, sealed)
    with pytest.raises(SealingError):
        owner.open(owner.new_key(), IMAGE, sealed)
    with pytest.raises(SealingError):
        owner.open(key, IMAGE, sealed[:-1])  # a size nothing seals to


def test_a_wrapped_key_opens_only_for_its_recipient_and_picture(owner: Sealing,
                                                                desk: Sealing) -> None:
    key = owner.new_key()
    wrapped = owner.wrap(key, IMAGE, desk.public_key)
    assert len(wrapped) == WRAPPED_SIZE and key not in wrapped
    assert desk.unwrap(wrapped, IMAGE) == key
    assert owner.wrap(key, IMAGE, desk.public_key) != wrapped  # a fresh ephemeral key each time
    with pytest.raises(SealingError):
        owner.unwrap(wrapped, IMAGE)  # wrapped for the desk, not for us
    with pytest.raises(SealingError):
        desk.unwrap(wrapped, OTHER)  # bound to its picture
    for position in range(len(wrapped)):
        changed = bytearray(wrapped)
        changed[position] ^= 0x01
        with pytest.raises(SealingError):
            desk.unwrap(bytes(changed), IMAGE)
    with pytest.raises(SealingError):
        desk.unwrap(wrapped[:-1], IMAGE)
    # Our own key, wrapped for ourselves: the owner keeps keys this way with its list.
    assert owner.unwrap(owner.wrap(key, IMAGE, owner.public_key), IMAGE) == key


def test_a_record_may_not_be_longer_than_the_layout_allows(owner: Sealing) -> None:
    key = owner.new_key()
    with pytest.raises(ValueError):
        owner.seal_record(key, IMAGE, 0, b"x" * (RECORD + 1), last=True)
    with pytest.raises(ValueError):
        owner.seal_record(key, IMAGE, 0, b"x" * 10, last=False)
    with pytest.raises(ValueError):
        owner.seal(b"short", IMAGE, b"x")
