"""The room ledger that ``Card`` and ``MemoryStore`` share: used, reserved, and refusals."""

from __future__ import annotations

import pytest

from protocol.store import CardFullError, Usage
from storage.room import RoomLedger


def ledger(capacity: int = 100, reserve: int = 0) -> RoomLedger:
    return RoomLedger(capacity, reserve=reserve, refusal=lambda size, free, what: f"{what} {size}/{free}")


def test_a_write_past_the_capacity_is_refused_with_the_cards_own_words() -> None:
    room = ledger(100, reserve=10)
    room.take(80)
    room.need(10)
    with pytest.raises(CardFullError, match="chunk 11/10"):
        room.need(11, what="chunk")
    assert room.usage() == Usage(capacity=100, used=80, reserved=10)


def test_a_held_partial_fills_its_reservation_and_is_not_counted_twice() -> None:
    room = ledger(100)
    room.check_promise("a", 60, what="holding a")
    room.promise("a", 60)
    assert room.usage().reserved == 60
    with pytest.raises(CardFullError):
        room.need(41)  # only 40 are free beside the promise
    covered = room.covered("a", 50)
    room.need(50, covered=covered)  # lands in the promised room
    room.take(50)
    room.fill("a", 50)
    assert room.usage() == Usage(capacity=100, used=50, reserved=10)
    room.unpromise("a")
    room.fill("a", 0)
    assert room.usage() == Usage(capacity=100, used=50, reserved=0)


def test_a_promise_that_grows_past_the_room_is_refused_and_changes_nothing() -> None:
    room = ledger(100)
    room.promise("a", 30)
    room.take(50)
    room.check_promise("a", 50, what="holding a")  # 20 more of the 20 free
    with pytest.raises(CardFullError, match="holding a"):
        room.check_promise("a", 51, what="holding a")
    assert room.usage().reserved == 30
