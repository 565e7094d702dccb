"""Room on a card: the one high-water rule and the one per-peer share rule.

The high-water mark (``NodeConfig.high_water``, a fraction of the capacity) is where a
camera starts to disperse, above which a holder takes nothing more, and below which
originals may still be pulled or collected home.  A peer's share
(``NodeConfig.max_share_per_peer``) caps what one owner may hold or reserve on our card
(issue 7, per-peer limits).  Every place that weighs room asks here, so the rule is
written once.
"""

from __future__ import annotations

from protocol.store import Usage


def mark(capacity: int, high_water: float) -> int:
    """Bytes of a ``capacity``-byte card at its high-water mark."""
    return int(high_water * capacity)


def over_mark(usage: Usage, high_water: float) -> bool:
    """The card's used bytes are past its mark (reservations not counted): disperse."""
    return usage.used > mark(usage.capacity, high_water)


def below_mark(usage: Usage, high_water: float) -> int:
    """Bytes that may still come in before the mark, after what is used and reserved
    (negative when the card is past it)."""
    return mark(usage.capacity, high_water) - usage.used - usage.reserved


def peer_share(capacity: int, max_share_per_peer: float) -> int:
    """Bytes one peer may hold or reserve on a ``capacity``-byte card."""
    return int(max_share_per_peer * capacity)
