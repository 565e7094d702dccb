"""protocol/room.py: the high-water and per-peer share rules, at their edges."""

from __future__ import annotations

from protocol import room
from protocol.store import Usage


def test_the_mark_is_the_fraction_of_the_capacity_rounded_down() -> None:
    assert room.mark(1000, 0.9) == 900
    assert room.mark(999, 0.5) == 499


def test_a_card_at_its_mark_is_not_over_it_one_byte_past_is() -> None:
    assert not room.over_mark(Usage(capacity=1000, used=900, reserved=50), 0.9)
    assert room.over_mark(Usage(capacity=1000, used=901, reserved=0), 0.9)


def test_below_mark_counts_reservations_and_goes_negative_past_the_mark() -> None:
    assert room.below_mark(Usage(capacity=1000, used=600, reserved=100), 0.9) == 200
    assert room.below_mark(Usage(capacity=1000, used=950, reserved=0), 0.9) == -50


def test_a_peer_share_is_its_fraction_of_the_capacity() -> None:
    assert room.peer_share(1000, 0.5) == 500
    assert room.peer_share(1001, 0.25) == 250
