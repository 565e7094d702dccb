"""Kill-tests for storage/card.py's mutants (issue 14): opening, refusing, closing, batching.

mutmut leaves the card's ``@_locked`` methods alone (it cannot trampoline a
decorated function); those capacity paths (reserve, free_original,
release_held, usage) are pinned here by hand too, each line by a test that fails
if it changes (tests/mutation/triage_card.md lists them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.store import DispersalState, Incoming, Usage, Where
from storage.card import Card
from storage.errors import CardBusy, CardFullError, NotFound, StoreError

DEVICE = "a" * 64
PEER = "b" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    opened = Card.create(tmp_path / "card", device_id=DEVICE, name="cam", capacity=10_000, reserve=0)
    yield opened
    opened.close()


def test_a_card_opens_with_the_settings_it_was_made_with(tmp_path: Path) -> None:
    made = Card.create(tmp_path / "c", device_id=DEVICE, name="left", capacity=5000, role="desk",
                       reserve=300)
    assert (made.device_id, made.name, made.role, made.capacity, made.reserve_bytes) == (
        DEVICE, "left", "desk", 5000, 300,
    )
    assert made.usage() == Usage(capacity=5000, used=0, reserved=300)
    assert made.recovered == []
    made.close()
    with Card.open(str(tmp_path / "c")) as again:  # a str path works as well as a Path
        assert (again.name, again.role, again.capacity, again.reserve_bytes) == (
            "left", "desk", 5000, 300,
        )
        assert again.path == tmp_path / "c"
        assert again.usage() == Usage(capacity=5000, used=0, reserved=300)


def test_a_write_past_the_capacity_is_refused_in_the_cards_words(card: Card) -> None:
    card.add_local(b"x" * 9_000, name="big.jpg", now=1.0)
    with pytest.raises(CardFullError) as caught:
        card.add_local(b"y" * 1_500, name="more.jpg", now=2.0)
    assert str(caught.value) == (
        "card 'cam' is full: 'more.jpg' needs 1.5 kB but only 1.0 kB of 10.0 kB is free; "
        "disperse or delete pictures, or use a card with more capacity"
    )
    assert card.usage().used == 9_000


def test_a_closed_card_says_so_for_a_locked_call_and_for_an_import(card: Card) -> None:
    card.close()
    message = f"the card {card.path} is closed; open it again to use it"
    with pytest.raises(StoreError) as caught:
        card.usage()
    assert str(caught.value) == message
    with pytest.raises(StoreError) as caught:
        card.add_local(b"late", name="late.jpg", now=1.0)
    assert str(caught.value) == message
    with pytest.raises(StoreError) as caught:
        card.images()  # answered by the catalog, still under the card's lock
    assert str(caught.value) == message


def test_closing_releases_the_card_and_a_failed_open_keeps_nothing(card: Card) -> None:
    with pytest.raises(CardBusy):
        Card.open(card.path)
    card.add_local(b"still fine", name="ok.jpg", now=1.0)  # the failed open took nothing
    card.close()
    card.close()
    with Card.open(card.path) as again:
        assert len(again.images()) == 1
    with Card.open(card.path) as third:  # and the context manager released it too
        assert third.usage().used == len(b"still fine")


def test_what_recovery_did_is_logged(card: Card, caplog: pytest.LogCaptureFixture) -> None:
    card.close()
    (card.path / "tmp" / "in-7").write_bytes(b"half")
    with caplog.at_level(logging.WARNING, logger="cammesh.card"), Card.open(card.path) as again:
        assert again.recovered == ["removed an unfinished write in-7"]
    assert [r.getMessage() for r in caplog.records if r.name == "cammesh.card"] == [
        f"card {card.path}: removed an unfinished write in-7"
    ]


def test_a_sync_that_fails_on_close_is_logged_and_the_card_still_closes(
    card: Card, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(card._partials, "close", broken)
    with caplog.at_level(logging.WARNING, logger="cammesh.card"):
        card.close()
    assert [r.getMessage() for r in caplog.records if r.name == "cammesh.card"] == [
        f"card {card.path}: could not sync the incoming partials: disk gone"
    ]
    with pytest.raises(StoreError):
        card.usage()
    Card.open(card.path).close()  # released


def test_add_local_keeps_what_it_is_given(card: Card) -> None:
    record = card.add_local(b"pic", name="p.jpg", now=3.0, mime="image/heic", capture_time=2.0,
                            metadata={"Model": "X"}, thumbnail=b"thumb")
    again = card.image(record.image_id)
    assert again is not None
    assert (again.name, again.mime, again.capture_time, again.thumbnail, again.where) == (
        "p.jpg", "image/heic", 2.0, b"thumb", Where.LOCAL,
    )
    assert again.metadata["Model"] == "X"
    assert card.thumbnail_sources() == {record.image_id: "given"}
    plain = card.add_local(b"plain", name="q.jpg", now=3.0)
    got = card.image(plain.image_id)
    assert got is not None and got.mime == "image/jpeg" and got.capture_time is None


def test_deferred_sync_syncs_every_n_pictures_and_at_the_end(
    card: Card, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    catalog = card._catalog
    real_sync, real_deferred = catalog.sync, catalog.set_deferred
    def sync() -> None:
        calls.append("sync")
        real_sync()

    def set_deferred(on: bool) -> None:
        calls.append(f"deferred {on}")
        real_deferred(on)

    monkeypatch.setattr(catalog, "sync", sync)
    monkeypatch.setattr(catalog, "set_deferred", set_deferred)
    with card.deferred_sync(every=2):
        for i in range(5):
            card.add_local(b"bulk %d" % i, name=f"{i}.jpg", now=1.0)
            calls.append(f"added {i}")
    assert calls == [
        "deferred True", "added 0", "sync", "added 1", "added 2", "sync", "added 3", "added 4",
        "sync", "deferred False",
    ]
    calls.clear()
    card.add_local(b"after", name="after.jpg", now=1.0)
    assert calls == []  # outside the block, every write is power-safe on its own
    with card.deferred_sync():
        for i in range(3):
            card.add_local(b"default %d" % i, name=f"d{i}.jpg", now=1.0)
    assert calls == ["deferred True", "sync", "deferred False"]  # every=64: only the end


def test_a_deferred_block_on_a_card_closed_inside_it_ends_quietly(card: Card) -> None:
    with card.deferred_sync(every=3):
        card.add_local(b"one", name="1.jpg", now=1.0)
        card.close()
    with Card.open(card.path) as again:
        assert len(again.images()) == 1


def test_batched_chunks_are_recorded_once_when_the_outer_block_ends(
    card: Card, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_id = sha(b"held")
    card.reserve(image_id, 100)
    syncs: list[bool] = []
    real = card._partials.sync

    def spy(*, hard: bool = True) -> None:
        syncs.append(hard)
        real(hard=hard)

    monkeypatch.setattr(card._partials, "sync", spy)
    card.write_partial(image_id, Incoming.HELD, 0, b"a" * 10)
    assert syncs == [True]  # on its own: recorded at once, power-safe
    with card.batched_partials():
        card.write_partial(image_id, Incoming.HELD, 10, b"b" * 10)
        with card.batched_partials():
            card.write_partial(image_id, Incoming.HELD, 20, b"c" * 10)
        assert syncs == [True]  # the inner block's end records nothing yet
        card.write_partial(image_id, Incoming.HELD, 30, b"d" * 10)
    assert syncs == [True, False]  # once, soft
    card.write_partial(image_id, Incoming.HELD, 40, b"e" * 10)
    assert syncs == [True, False, True]
    assert card.partial_offset(image_id, Incoming.HELD) == 50


def test_a_batched_block_on_a_card_closed_inside_it_ends_quietly(card: Card) -> None:
    image_id = sha(b"held")
    card.reserve(image_id, 100)
    with card.batched_partials():
        card.write_partial(image_id, Incoming.HELD, 0, b"a" * 10)
        card.close()
    with Card.open(card.path) as again:
        assert again.partial_offset(image_id, Incoming.HELD) == 10  # close recorded it


# --- the @_locked capacity paths mutmut skips -------------------------------------------


def test_a_reservation_of_no_bytes_is_fine_and_a_negative_one_is_refused(card: Card) -> None:
    card.reserve(sha(b"zero"), 0)
    with pytest.raises(StoreError) as caught:
        card.reserve(sha(b"neg"), -1)
    assert str(caught.value) == "cannot reserve -1 bytes"
    assert card.usage().reserved == 0


def test_a_reservation_is_refused_past_the_room_and_kept_through_a_reopen(card: Card) -> None:
    image_id = sha(b"held")
    card.add_local(b"x" * 4_000, name="x.jpg", now=1.0)
    card.reserve(image_id, 6_000)
    assert card.usage() == Usage(capacity=10_000, used=4_000, reserved=6_000)
    with pytest.raises(CardFullError, match=f"holding {sha(b'other')[:12]} needs 1 B but only 0 B"):
        card.reserve(sha(b"other"), 1)
    card.close()
    with Card.open(card.path) as again:
        assert again.usage() == Usage(capacity=10_000, used=4_000, reserved=6_000)
        again.unreserve(image_id)
        assert again.usage().reserved == 0
    with Card.open(card.path) as third:
        assert third.usage().reserved == 0  # the unreserve was durable


def test_freeing_needs_a_stored_holder_and_gives_the_room_back(card: Card) -> None:
    record = card.add_local(b"f" * 500, name="f.jpg", now=1.0)
    card.set_dispersion(record.image_id, PEER, DispersalState.REQUESTED, 2.0)
    with pytest.raises(StoreError) as caught:
        card.free_original(record.image_id, 3.0)
    assert str(caught.value) == (
        f"picture {record.image_id[:12]} has no holder that confirmed storing it; "
        "its original stays on the card until one does"
    )
    assert card.usage().used == 500
    card.set_dispersion(record.image_id, PEER, DispersalState.STORED, 4.0)
    card.free_original(record.image_id, 5.0)
    assert card.usage().used == 0
    got = card.image(record.image_id)
    assert got is not None and got.where is Where.DISPERSED
    with pytest.raises(NotFound) as missing:
        card.free_original(record.image_id, 6.0)
    assert str(missing.value) == f"picture {record.image_id[:12]} has no original on this card"


def test_releasing_a_held_original_gives_its_room_back_once(card: Card) -> None:
    data = b"held bytes" * 30
    image_id = sha(data)
    card.reserve(image_id, len(data))
    card.write_partial(image_id, Incoming.HELD, 0, data)
    card.finish_partial(image_id, Incoming.HELD, image_id, 1.0, owner=PEER)
    assert card.usage() == Usage(capacity=10_000, used=len(data), reserved=0)
    card.release_held(image_id)
    assert card.usage().used == 0
    assert card.held(image_id) is None
    assert not (card.path / "held" / image_id).exists()
    card.release_held(image_id)  # again: nothing to give back
    assert card.usage().used == 0
