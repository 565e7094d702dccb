"""Incoming partials written in batches (Card.batched_partials): what the catalog records,
what a crash of the process keeps, and the hash that makes an original count."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from protocol.store import Incoming
from storage.card import Card
from storage.catalog import CATALOG_NAME
from storage.errors import HashMismatch

DATA = bytes(range(256)) * 4096  # 1 MiB
STEP = 128 * 1024


def recorded(card: Path, image_id: str) -> int | None:
    """The partial's length as the catalog file says it, read past the open card."""
    with sqlite3.connect(card / CATALOG_NAME) as db:
        row = db.execute("SELECT length FROM partials WHERE image_id = ?", (image_id,)).fetchone()
    return None if row is None else int(row[0])


OWNER = "b" * 64
IMAGE = hashlib.sha256(DATA).hexdigest()


def held_here(card: Card) -> str:
    """A peer's original this card agreed to hold (dispersal): its partial comes in chunks."""
    card.reserve(IMAGE, len(DATA))
    return IMAGE


@pytest.fixture
def card(tmp_path: Path) -> Card:
    return Card.create(tmp_path / "card", device_id="a" * 64, name="card", capacity=10**8,
                       reserve=0)


def test_a_batch_is_recorded_once_when_it_ends_and_the_original_counts_after_its_hash(
    card: Card,
) -> None:
    image_id = held_here(card)
    with card:
        with card.batched_partials():
            for offset in range(0, len(DATA) // 2, STEP):
                card.write_partial(image_id, Incoming.HELD, offset, DATA[offset:offset + STEP])
            assert recorded(card.path, image_id) is None  # not yet: the block has not ended
            assert card.partial_offset(image_id, Incoming.HELD) == len(DATA) // 2
        assert recorded(card.path, image_id) == len(DATA) // 2
        with card.batched_partials():
            for offset in range(len(DATA) // 2, len(DATA), STEP):
                card.write_partial(image_id, Incoming.HELD, offset, DATA[offset:offset + STEP])
        card.finish_partial(image_id, Incoming.HELD, image_id, 3.0, owner=OWNER)
        assert card.read_held(image_id, 0, len(DATA)) == DATA


def test_a_crash_inside_a_batch_resumes_from_what_was_recorded_and_still_verifies(
    card: Card,
) -> None:
    image_id = held_here(card)
    with card.batched_partials():
        card.write_partial(image_id, Incoming.HELD, 0, DATA[:STEP])
    crashed = card.path.parent / "crashed"
    with card.batched_partials():
        card.write_partial(image_id, Incoming.HELD, STEP, DATA[STEP:2 * STEP])
        # The process dies here: the card as the kernel has it at this instant.
        shutil.copytree(card.path, crashed)
    card.close()
    torn = crashed / "partial" / "held" / image_id
    torn.write_bytes(torn.read_bytes() + b"\0" * 100)  # and a torn tail beyond it
    with Card.open(crashed) as again:
        assert again.partial_offset(image_id, Incoming.HELD) == STEP
        with again.batched_partials():  # resumed: the hash covers the kept bytes too
            for offset in range(STEP, len(DATA), STEP):
                again.write_partial(image_id, Incoming.HELD, offset, DATA[offset:offset + STEP])
        again.finish_partial(image_id, Incoming.HELD, image_id, 3.0, owner=OWNER)
        assert hashlib.sha256(again.read_held(image_id, 0, len(DATA))).hexdigest() == image_id


def test_bytes_that_do_not_hash_to_the_id_never_count(card: Card) -> None:
    image_id = held_here(card)
    with card:
        with card.batched_partials():
            card.write_partial(image_id, Incoming.HELD, 0, DATA[:-1] + b"?")
        with pytest.raises(HashMismatch):
            card.finish_partial(image_id, Incoming.HELD, image_id, 3.0, owner=OWNER)
        assert card.held(image_id) is None
        assert card.partial_offset(image_id, Incoming.HELD) == 0
        assert recorded(card.path, image_id) is None


def test_closing_the_card_makes_an_open_partial_power_safe(card: Card) -> None:
    image_id = held_here(card)
    with card.batched_partials():
        card.write_partial(image_id, Incoming.HELD, 0, DATA[:STEP])
    card.close()
    assert recorded(card.path, image_id) == STEP
    with Card.open(card.path) as again:
        assert again.recovered == []
        assert again.usage().used == STEP
