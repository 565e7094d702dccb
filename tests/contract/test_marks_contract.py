"""The marks part of the protocol.store.Store contract, kept by the card and the in-memory store.

Both keep a picture's marks per field with the (time, device) of its last change, merge
another device's by last writer wins (``Stamped.order``), keep marks that come before their
picture, refuse values no card keeps with nothing changed, and stamp a local change never
before the field's last stamp.
"""

from __future__ import annotations

import pytest

from protocol.store import Stamped, StoreError
from tests.contract.conftest import OWN_DEVICE, PEER, MakeStore, add_local

UNKNOWN = "d" * 64


def test_no_marks_at_first(make_store: MakeStore) -> None:
    store = make_store()
    image_id = add_local(store, b"picture").image_id
    assert store.stamped_marks(image_id) == {}
    assert store.stamped_marks(UNKNOWN) == {}
    assert store.all_stamped_marks() == {}


def test_a_local_change_is_stamped_by_this_device_and_kept(make_store: MakeStore) -> None:
    store = make_store()
    image_id = add_local(store, b"picture").image_id
    store.set_marks(image_id, now=10.0, rating=3, keywords=("a", "b"))
    assert store.stamped_marks(image_id) == {
        "rating": Stamped(3, 10.0, OWN_DEVICE), "keywords": Stamped(("a", "b"), 10.0, OWN_DEVICE),
    }
    assert store.all_stamped_marks() == {image_id: store.stamped_marks(image_id)}


def test_merge_keeps_per_field_the_last_writer_and_returns_what_changed(
    make_store: MakeStore,
) -> None:
    store = make_store()
    image_id = add_local(store, b"picture").image_id
    store.set_marks(image_id, now=10.0, rating=3, caption="mine")
    theirs = {"rating": Stamped(5, 20.0, PEER), "caption": Stamped("older", 5.0, PEER),
              "tagged": Stamped(True, 1.0, PEER)}
    changes = store.merge_marks(image_id, theirs)
    assert changes == {"rating": theirs["rating"], "tagged": theirs["tagged"]}
    assert store.stamped_marks(image_id)["caption"] == Stamped("mine", 10.0, OWN_DEVICE)
    assert store.merge_marks(image_id, theirs) == {}  # idempotent
    # A tie on time goes to the greater device id, then the greater value.
    assert store.merge_marks(image_id, {"rating": Stamped(1, 20.0, "f" * 64)}) == {
        "rating": Stamped(1, 20.0, "f" * 64)}


def test_a_local_change_after_a_peer_s_later_clock_still_wins(make_store: MakeStore) -> None:
    store = make_store()
    image_id = add_local(store, b"picture").image_id
    store.merge_marks(image_id, {"rating": Stamped(5, 1000.0, PEER)})
    store.set_marks(image_id, now=10.0, rating=1)  # this clock is behind the peer's
    mark = store.stamped_marks(image_id)["rating"]
    assert (mark.value, mark.device) == (1, OWN_DEVICE) and mark.at > 1000.0


def test_marks_for_a_picture_not_in_the_catalog_are_kept(make_store: MakeStore) -> None:
    store = make_store()
    store.merge_marks(UNKNOWN, {"color": Stamped(2, 1.0, PEER)})
    assert store.stamped_marks(UNKNOWN) == {"color": Stamped(2, 1.0, PEER)}
    assert UNKNOWN in store.all_stamped_marks()


@pytest.mark.parametrize("bad", [
    {"rating": Stamped(9, 1.0, PEER)},
    {"caption": Stamped("bell\x07", 1.0, PEER)},
    {"stars": Stamped(1, 1.0, PEER)},
    {"rating": Stamped(2, 1.0, PEER), "headline": Stamped("two\nlines", 1.0, PEER)},
])
def test_a_mark_no_card_keeps_is_refused_and_nothing_changes(
    make_store: MakeStore, bad: dict[str, Stamped]
) -> None:
    store = make_store()
    image_id = add_local(store, b"picture").image_id
    with pytest.raises(StoreError):
        store.merge_marks(image_id, bad)
    assert store.stamped_marks(image_id) == {}
