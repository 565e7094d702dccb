"""Kill-tests for storage/recovery.py's mutants (issue 14): what a reopen puts right, and the room.

A card is filled with one of everything (a local original, a held original, a
smaller copy, a held partial under its reservation, a partial original), closed,
damaged the way a crash or a hand could, and reopened: the report, the files,
the catalog and the room must all agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.store import ImageRecord, Incoming, Usage, Where
from storage.card import Card

DEVICE = "a" * 64
PEER = "b" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


LOCAL = b"local original" * 10  # 140
HELD = b"held for the peer" * 4  # 68
SMALL = b"a smaller copy"  # 14
PEER_ORIGINAL = b"the peer's full picture" * 3
HELD_ID, SMALL_ID, INCOMING_ID = sha(HELD), sha(PEER_ORIGINAL), sha(b"still arriving")
RESERVED = 300


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    card = Card.create(tmp_path / "card", device_id=DEVICE, name="cam", capacity=10_000, reserve=0)
    card.add_local(LOCAL, name="l.jpg", now=1.0)
    card.reserve(HELD_ID, len(HELD))
    card.write_partial(HELD_ID, Incoming.HELD, 0, HELD)
    card.finish_partial(HELD_ID, Incoming.HELD, HELD_ID, 2.0, owner=PEER)
    card.add_thumbnail(
        ImageRecord(SMALL_ID, PEER, 1, "P.JPG", len(PEER_ORIGINAL), "image/jpeg", None, {},
                    b"t", Where.ABSENT),
        1.0,
    )
    card.write_partial(SMALL_ID, Incoming.SMALLER, 0, SMALL)
    card.finish_partial(SMALL_ID, Incoming.SMALLER, sha(SMALL), 2.0)
    card.reserve(INCOMING_ID, RESERVED)
    card.write_partial(INCOMING_ID, Incoming.HELD, 0, b"x" * 50)
    card.write_partial(SMALL_ID, Incoming.ORIGINAL, 0, b"y" * 20)  # the full one, coming
    yield card
    card.close()


def reopen(card: Card) -> Card:
    card.close()
    return Card.open(card.path)


def test_a_clean_reopen_reports_nothing_and_counts_every_byte_and_promise(card: Card) -> None:
    before = card.usage()
    assert before == Usage(
        capacity=10_000,
        used=len(LOCAL) + len(HELD) + len(SMALL) + 50 + 20,
        reserved=RESERVED - 50,
    )
    with reopen(card) as again:
        assert again.recovered == []
        assert again.usage() == before


def test_a_held_original_or_smaller_copy_gone_from_the_card_is_forgotten(card: Card) -> None:
    card.close()
    (card.path / "held" / HELD_ID).unlink()
    (card.path / "smaller" / SMALL_ID).unlink()
    with Card.open(card.path) as again:
        assert again.recovered == [
            f"held original {HELD_ID[:12]} is missing from the card: forgotten",
            f"smaller copy {SMALL_ID[:12]} is missing from the card: forgotten",
        ]
        assert again.held(HELD_ID) is None
        assert again.smaller_copies() == {}
        assert again.usage().used == len(LOCAL) + 50 + 20
    with Card.open(card.path) as third:
        assert third.recovered == []


def test_stray_held_and_smaller_files_are_removed_and_named(card: Card) -> None:
    card.close()
    stray_held, stray_small = card.path / "held" / ("c" * 64), card.path / "smaller" / ("d" * 64)
    stray_held.write_bytes(b"nobody listed this")
    stray_small.write_bytes(b"nor this")
    with Card.open(card.path) as again:
        assert again.recovered == [
            f"removed held original {'c' * 12}, which the catalog does not list",
            f"removed smaller copy {'d' * 12}, which the catalog does not list",
        ]
        assert not stray_held.exists() and not stray_small.exists()
        assert again.held(HELD_ID) is not None
        assert again.smaller_copies() == {SMALL_ID: len(SMALL)}


def test_an_unlisted_partial_is_removed_and_a_missing_one_forgotten(card: Card) -> None:
    card.close()
    unlisted = card.path / "partial" / "original" / ("e" * 64)
    unlisted.write_bytes(b"half of something")
    (card.path / "partial" / "held" / INCOMING_ID).unlink()
    with Card.open(card.path) as again:
        assert again.recovered == [
            f"removed a partial original {'e' * 12} the catalog does not list",
        ]
        assert not unlisted.exists()
        assert again.partial_offset(INCOMING_ID, Incoming.HELD) == 0
        assert again.partial_offset(SMALL_ID, Incoming.ORIGINAL) == 20
        # The reservation stands, now wholly outstanding; the partial's bytes are gone.
        assert again.usage() == Usage(
            capacity=10_000, used=len(LOCAL) + len(HELD) + len(SMALL) + 20, reserved=RESERVED
        )
    with Card.open(card.path) as third:
        assert third.recovered == []


def test_a_partial_shorter_than_recorded_is_recorded_as_it_is(card: Card) -> None:
    card.close()
    path = card.path / "partial" / "original" / SMALL_ID
    path.write_bytes(b"y" * 8)  # lost its tail after the length was committed
    with Card.open(card.path) as again:
        assert again.recovered == [f"trimmed partial original {SMALL_ID[:12]} to 20 bytes"]
        assert path.read_bytes() == b"y" * 8
        assert again.partial_offset(SMALL_ID, Incoming.ORIGINAL) == 8
        assert again.usage().used == len(LOCAL) + len(HELD) + len(SMALL) + 50 + 8
    with Card.open(card.path) as third:
        assert third.recovered == []


def test_a_torn_tail_is_cut_back_to_the_recorded_length(card: Card) -> None:
    card.close()
    path = card.path / "partial" / "held" / INCOMING_ID
    with path.open("ab") as f:
        f.write(b"never committed")
    with Card.open(card.path) as again:
        assert again.recovered == [f"trimmed partial held {INCOMING_ID[:12]} to 50 bytes"]
        assert path.read_bytes() == b"x" * 50
        assert again.partial_offset(INCOMING_ID, Incoming.HELD) == 50
        assert again.usage().reserved == RESERVED - 50


def test_leftovers_are_reported_in_order(card: Card) -> None:
    card.close()
    (card.path / "tmp" / "b-write").write_bytes(b"1")
    (card.path / "tmp" / "a-write").write_bytes(b"2")
    (card.path / "originals" / "zz").write_bytes(b"not a shard")
    local = next((card.path / "originals").glob("*/*"))
    local.unlink()
    with Card.open(card.path) as again:
        assert again.recovered == [
            "removed an unfinished write a-write",
            "removed an unfinished write b-write",
            "removed zz, which does not belong in originals/",
            f"original {local.name[:12]} is missing from the card: marked absent",
        ]
        assert list((card.path / "tmp").iterdir()) == []
        record = again.image(local.name)
        assert record is not None and record.where is Where.ABSENT
        assert again.usage().used == len(HELD) + len(SMALL) + 50 + 20
