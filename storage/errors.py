"""Errors of the card, rooted in ``protocol.store.StoreError`` (and so in ``CammeshError``).

The four the protocol knows (``StoreError``, ``CardFullError``, ``NotFound``,
``HashMismatch``) are re-exported from ``protocol.store`` so that a caller can
catch either name; the rest are about the card as a folder and about import.
"""

from __future__ import annotations

from protocol.store import CardFullError, HashMismatch, NotFound, StoreError

__all__ = [
    "AmbiguousId",
    "BadSize",
    "CardBusy",
    "CardExists",
    "CardFullError",
    "CatalogTooNew",
    "HashMismatch",
    "ImportRejected",
    "InvalidMarks",
    "MovieUnusable",
    "NotACard",
    "NotFound",
    "StoreError",
]


class CardExists(StoreError):
    """``Card.create`` found a card already in that folder; nothing was changed."""


class NotACard(StoreError):
    """The folder holds no card (no catalog); run ``cammesh init`` on it first."""


class CardBusy(StoreError):
    """Another process (a running node, another import) has the card open; one at a time."""


class CatalogTooNew(StoreError):
    """The catalog was written by a newer cammesh; this one cannot read it safely."""


class AmbiguousId(NotFound):
    """An id prefix matches more than one picture; give more characters."""


class BadSize(StoreError, ValueError):
    """A human size such as ``32GB`` could not be parsed."""


class ImportRejected(StoreError):
    """One file could not be imported (unreadable, empty, not a regular file); the rest go on."""


class InvalidMarks(StoreError, ValueError):
    """A mark or colour label was refused (out of range, too long, control characters)."""


class MovieUnusable(StoreError):
    """A movie gives no strip (damaged, hostile, or no decoder); the message is the reason
    shown with its placeholder, and the movie itself is still imported."""
