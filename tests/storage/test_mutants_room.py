"""Kill-tests for storage/room.py's mutants (issue 14): the room ledger's arithmetic, edge by edge.

Every figure here is what `cammesh status` shows and what a holder's accept
rests on, so each running total is pinned after each call.
"""

from __future__ import annotations

import pytest

from protocol.store import CardFullError, Usage
from storage.room import RoomLedger


def words(size: int, free: int, what: str) -> str:
    return f"{what} needs {size}, {free} free"


def ledger(capacity: int = 100, reserve: int = 0) -> RoomLedger:
    return RoomLedger(capacity, reserve=reserve, refusal=words)


def test_a_new_ledger_counts_only_its_reserve() -> None:
    room = ledger(100, reserve=7)
    assert (room.capacity, room.reserve, room.used) == (100, 7, 0)
    assert room.usage() == Usage(capacity=100, used=0, reserved=7)
    assert RoomLedger(50, refusal=words).usage() == Usage(capacity=50, used=0, reserved=0)


def test_a_write_that_exactly_fills_the_card_fits_and_one_byte_more_does_not() -> None:
    room = ledger(100, reserve=10)
    room.take(40)
    room.need(50)
    with pytest.raises(CardFullError) as caught:
        room.need(51)
    assert str(caught.value) == "this write needs 51, 50 free"
    with pytest.raises(CardFullError) as caught:
        room.need(52, what="a chunk")
    assert str(caught.value) == "a chunk needs 52, 50 free"


def test_bytes_in_promised_room_need_only_what_is_not_covered() -> None:
    room = ledger(100)
    room.take(90)
    room.need(15, covered=5)  # 10 new bytes, 10 free
    with pytest.raises(CardFullError) as caught:
        room.need(16, covered=5)
    assert str(caught.value) == "this write needs 16, 10 free"


def test_take_and_give_move_used_both_ways() -> None:
    room = ledger(100)
    room.take(30)
    room.take(-5)
    assert room.used == 25
    room.give(20)
    assert room.usage() == Usage(capacity=100, used=5, reserved=0)


def test_a_promise_reserves_its_size_until_its_partial_fills_it() -> None:
    room = ledger(100)
    assert room.outstanding("a") == 0  # nothing promised
    room.check_promise("a", 40, what="holding a")
    room.promise("a", 40)
    assert room.outstanding("a") == 40
    assert room.usage().reserved == 40
    room.fill("a", 15)
    assert room.outstanding("a") == 25
    assert room.usage().reserved == 25
    assert room.covered("a", 10) == 10
    assert room.covered("a", 30) == 25
    room.fill("a", 50)  # the partial grew past the promise
    assert room.outstanding("a") == 0
    assert room.covered("a", 5) == 0
    assert room.usage().reserved == 0


def test_a_replacing_promise_changes_the_reserve_by_the_difference() -> None:
    room = ledger(100, reserve=3)
    room.promise("a", 40)
    room.promise("b", 10)
    room.promise("a", 25)
    assert room.usage().reserved == 3 + 25 + 10
    room.fill("a", 5)
    room.promise("a", 30)
    assert room.outstanding("a") == 25
    assert room.usage().reserved == 3 + 25 + 10
    room.unpromise("a")
    assert room.outstanding("a") == 0
    assert room.usage().reserved == 3 + 10
    room.unpromise("a")  # twice: nothing more
    room.unpromise("nobody")
    assert room.usage().reserved == 3 + 10


def test_a_partial_gone_gives_its_bytes_back_to_the_promise() -> None:
    room = ledger(100)
    room.promise("a", 40)
    room.fill("a", 30)
    assert room.usage().reserved == 10
    room.fill("a", 0)
    assert room.outstanding("a") == 40
    assert room.usage().reserved == 40
    room.fill("b", 20)  # a partial with no promise counts nothing here
    assert room.usage().reserved == 40
    room.promise("b", 25)
    assert room.outstanding("b") == 5


def test_a_promise_counts_the_bytes_already_arrived_and_what_it_replaces() -> None:
    room = ledger(100)
    room.take(60)
    room.fill("a", 30)  # 30 bytes of a's partial are here already (in used)
    room.check_promise("a", 70, what="holding a")  # 40 more, 40 free
    with pytest.raises(CardFullError) as caught:
        room.check_promise("a", 71, what="holding a")
    assert str(caught.value) == "holding a needs 41, 40 free"
    room.promise("a", 70)
    assert room.usage().free == 0
    room.check_promise("a", 70, what="holding a")  # the same promise again fits in itself
    room.check_promise("a", 20, what="holding a")  # less than arrived: needs nothing
    with pytest.raises(CardFullError):
        room.check_promise("b", 1, what="holding b")


def test_a_promise_smaller_than_what_arrived_needs_no_room_on_a_full_card() -> None:
    room = ledger(100)
    room.take(100)
    room.fill("a", 30)
    room.check_promise("a", 20, what="holding a")  # nothing more to come
    room.check_promise("a", 30, what="holding a")
    with pytest.raises(CardFullError):
        room.check_promise("a", 31, what="holding a")
