"""The contract of protocol.store.Store, which the real card and the in-memory store both keep.

Choices this contract pins down where store.py leaves room: deletes of things that are not
there (unreserve, discard_partial, release_held, remove_dispersion) do nothing; reads of
things that are not there raise NotFound; Usage.used counts originals, held originals,
smaller copies and unfinished partials; a reservation is used up by the held partial it was
made for.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from PIL import Image

from protocol.sealing import RECORD, SEALED_RECORD, sealed_size
from protocol.store import (
    CardFullError,
    Decision,
    DispersalState,
    DispersionEntry,
    HashMismatch,
    HeldRecord,
    ImageRecord,
    Incoming,
    NotFound,
    StoreError,
    TransferState,
    UserDecision,
    Where,
)
from tests.contract.conftest import OTHER_PEER, OWN_DEVICE, PEER, MakeStore, add_local, sha

DATA = b"original bytes of a picture " * 40


def peer_record(data: bytes, *, seq: int = 1, origin: str = PEER) -> ImageRecord:
    return ImageRecord(
        image_id=sha(data), origin=origin, seq=seq, name=f"P{seq}.JPG", size=len(data),
        mime="image/jpeg", capture_time=1_700_000_000.5,
        metadata={"make": "Acme", "iso": 200, "flash": False, "gps_lat": 48.5, "lens": None},
        thumbnail=b"\xff\xd8thumb" + bytes([seq % 256]), where=Where.LOCAL,
        wrapped_key=b"k" * 32,
    )


def write_all(store: object, image_id: str, kind: Incoming, data: bytes, step: int = 100) -> None:
    for offset in range(0, len(data), step):
        store.write_partial(image_id, kind, offset, data[offset : offset + step])  # type: ignore[attr-defined]


# --- the catalog -------------------------------------------------------------------------


def test_an_empty_store(make_store: MakeStore) -> None:
    store = make_store(5000)
    assert store.device_id == OWN_DEVICE
    assert list(store.images()) == []
    assert dict(store.seen()) == {}
    usage = store.usage()
    assert (usage.capacity, usage.used, usage.reserved, usage.free) == (5000, 0, 0, 5000)


def test_local_capture_numbers_pictures_of_this_device(make_store: MakeStore) -> None:
    store = make_store()
    first = add_local(store, b"one" * 10, name="A.JPG", now=5.0, metadata={"iso": 100}, thumbnail=b"t1")
    second = add_local(store, b"two" * 10, name="B.JPG", now=6.0)
    assert (first.image_id, first.origin, first.seq, first.where) == (sha(b"one" * 10), OWN_DEVICE, 1, Where.LOCAL)
    assert (first.name, first.size, first.thumbnail, dict(first.metadata)) == ("A.JPG", 30, b"t1", {"iso": 100})
    assert second.seq == 2 and first.original_at == 5.0
    assert store.image(first.image_id) == first
    assert list(store.images()) == [first, second]
    assert dict(store.seen()) == {OWN_DEVICE: 2}
    assert store.usage().used == 60


def test_a_duplicate_capture_changes_nothing(make_store: MakeStore) -> None:
    store = make_store()
    first = add_local(store, DATA)
    again = add_local(store, DATA, name="copy.jpg", now=9.0)
    assert again == first
    assert len(list(store.images())) == 1
    assert store.usage().used == len(DATA)


def test_a_capture_past_capacity_is_card_full_and_leaves_nothing(make_store: MakeStore) -> None:
    store = make_store(len(DATA) + 10)
    add_local(store, DATA)
    before = store.usage()
    with pytest.raises(CardFullError):
        add_local(store, b"x" * 11)
    assert store.usage() == before
    assert len(list(store.images())) == 1


def test_read_original_gives_slices_of_the_exact_bytes(make_store: MakeStore) -> None:
    store = make_store()
    record = add_local(store, DATA)
    assert store.read_original(record.image_id, 0, len(DATA)) == DATA
    assert store.read_original(record.image_id, 10, 25) == DATA[10:35]
    assert store.read_original(record.image_id, len(DATA) - 3, 100) == DATA[-3:]
    with pytest.raises(NotFound):
        store.read_original(sha(b"unknown"), 0, 10)


def test_a_peer_thumbnail_is_recorded_once_without_its_original(make_store: MakeStore) -> None:
    store = make_store()
    record = peer_record(DATA)
    assert store.add_thumbnail(record, 42.0) is True
    assert store.add_thumbnail(record, 43.0) is False
    got = store.image(record.image_id)
    assert got is not None
    assert (got.where, got.thumbnail_at, got.original_at) == (Where.ABSENT, 42.0, None)
    assert (got.origin, got.seq, got.name, got.size, got.mime) == (PEER, 1, "P1.JPG", len(DATA), "image/jpeg")
    assert (got.thumbnail, got.wrapped_key, got.capture_time) == (record.thumbnail, b"k" * 32, record.capture_time)
    assert dict(got.metadata) == dict(record.metadata)
    assert store.usage().used == 0
    with pytest.raises(NotFound):
        store.read_original(record.image_id, 0, 10)


def test_images_are_ordered_by_origin_and_seq_and_seen_stops_at_a_gap(make_store: MakeStore) -> None:
    store = make_store()
    for seq in (4, 2, 1):
        store.add_thumbnail(peer_record(b"p%d" % seq, seq=seq), 1.0)
    for seq in (3, 2):
        store.add_thumbnail(peer_record(b"o%d" % seq, seq=seq, origin=OTHER_PEER), 1.0)
    assert [(r.origin, r.seq) for r in store.images()] == [
        (PEER, 1), (PEER, 2), (PEER, 4), (OTHER_PEER, 2), (OTHER_PEER, 3)
    ]
    seen = store.seen()
    assert seen[PEER] == 2
    assert seen[OTHER_PEER] == 0  # named, so that a catalog exchange walks it too
    assert [r.seq for r in store.images_after(PEER, 1)] == [2, 4]
    assert [r.seq for r in store.images_after(PEER, 4)] == []
    assert [r.seq for r in store.images_after(OTHER_PEER, 0)] == [2, 3]
    store.add_thumbnail(peer_record(b"p3", seq=3), 2.0)
    assert store.seen()[PEER] == 4


# --- incoming transfers ------------------------------------------------------------------


def test_an_original_arrives_in_parts_and_resumes(make_store: MakeStore) -> None:
    store = make_store()
    record = peer_record(DATA)
    store.add_thumbnail(record, 1.0)
    image_id = record.image_id
    assert store.partial_offset(image_id, Incoming.ORIGINAL) == 0
    store.write_partial(image_id, Incoming.ORIGINAL, 0, DATA[:300])
    assert store.partial_offset(image_id, Incoming.ORIGINAL) == 300
    assert store.usage().used == 300
    with pytest.raises(StoreError):
        store.write_partial(image_id, Incoming.ORIGINAL, 100, DATA[100:200])  # not where it stands
    assert store.partial_offset(image_id, Incoming.ORIGINAL) == 300
    store.write_partial(image_id, Incoming.ORIGINAL, 300, DATA[300:])
    store.finish_partial(image_id, Incoming.ORIGINAL, sha(DATA), 77.0)
    got = store.image(image_id)
    assert got is not None and (got.where, got.original_at, got.thumbnail_at) == (Where.LOCAL, 77.0, 1.0)
    assert store.read_original(image_id, 0, len(DATA)) == DATA
    assert store.partial_offset(image_id, Incoming.ORIGINAL) == 0
    assert store.usage().used == len(DATA)


def test_a_wrong_hash_discards_the_partial(make_store: MakeStore) -> None:
    store = make_store()
    record = peer_record(DATA)
    store.add_thumbnail(record, 1.0)
    bad = DATA[:-1] + b"!"
    write_all(store, record.image_id, Incoming.ORIGINAL, bad)
    with pytest.raises(HashMismatch):
        store.finish_partial(record.image_id, Incoming.ORIGINAL, sha(DATA), 2.0)
    assert store.partial_offset(record.image_id, Incoming.ORIGINAL) == 0
    assert store.usage().used == 0
    got = store.image(record.image_id)
    assert got is not None and got.where is Where.ABSENT


def test_discarding_a_partial_frees_its_room(make_store: MakeStore) -> None:
    store = make_store()
    record = peer_record(DATA)
    store.add_thumbnail(record, 1.0)
    store.write_partial(record.image_id, Incoming.ORIGINAL, 0, DATA[:500])
    store.discard_partial(record.image_id, Incoming.ORIGINAL)
    store.discard_partial(record.image_id, Incoming.ORIGINAL)  # a second time does nothing
    assert store.partial_offset(record.image_id, Incoming.ORIGINAL) == 0
    assert store.usage().used == 0


def test_a_partial_past_capacity_is_card_full_and_leaves_nothing(make_store: MakeStore) -> None:
    store = make_store(400)
    record = peer_record(DATA)
    store.add_thumbnail(record, 1.0)
    store.write_partial(record.image_id, Incoming.ORIGINAL, 0, DATA[:300])
    with pytest.raises(CardFullError):
        store.write_partial(record.image_id, Incoming.ORIGINAL, 300, DATA[300:500])
    assert store.partial_offset(record.image_id, Incoming.ORIGINAL) == 300
    assert store.usage().used == 300


SMALL = b"a smaller jpeg" * 5


def with_smaller_copy(make_store: MakeStore) -> tuple[Any, ImageRecord]:
    """A store holding a peer's thumbnail and a smaller copy (``SMALL``) of its original."""
    store = make_store()
    record = peer_record(DATA)
    store.add_thumbnail(record, 1.0)
    write_all(store, record.image_id, Incoming.SMALLER, SMALL)
    store.finish_partial(record.image_id, Incoming.SMALLER, sha(SMALL), 3.0)
    return store, record


def test_a_smaller_copy_received_counts_against_capacity(make_store: MakeStore) -> None:
    store, record = with_smaller_copy(make_store)
    assert store.usage().used == len(SMALL)
    assert store.partial_offset(record.image_id, Incoming.SMALLER) == 0
    got = store.image(record.image_id)
    assert got is not None and got.where is Where.ABSENT


def test_a_smaller_copy_goes_once_its_original_arrives(make_store: MakeStore) -> None:
    """Issue 17: the copy stood in for the original; once the original is here it is dropped
    (the card also keeps one on purpose: tests/storage/test_smaller_copies.py)."""
    store, record = with_smaller_copy(make_store)
    write_all(store, record.image_id, Incoming.ORIGINAL, DATA)
    store.finish_partial(record.image_id, Incoming.ORIGINAL, sha(DATA), 4.0)
    assert store.usage().used == len(DATA)
    smaller = getattr(store, "smaller_bytes", None)  # the twin's reader
    if smaller is not None:
        assert smaller(record.image_id) is None
    else:
        assert store.smaller_copies() == {}


# --- reservations and held originals ---------------------------------------------------------


def test_reserve_promises_room_and_unreserve_gives_it_back(make_store: MakeStore) -> None:
    store = make_store(1000)
    store.reserve(sha(b"h"), 600)
    assert (store.usage().reserved, store.usage().free) == (600, 400)
    with pytest.raises(CardFullError):
        store.reserve(sha(b"other"), 401)
    assert store.usage().reserved == 600
    with pytest.raises(CardFullError):
        add_local(store, b"z" * 401)
    store.unreserve(sha(b"h"))
    store.unreserve(sha(b"h"))
    assert (store.usage().reserved, store.usage().free) == (0, 1000)


def test_a_held_original_fills_its_reservation_and_is_released(make_store: MakeStore) -> None:
    store = make_store(len(DATA))
    held_id = sha(DATA)
    store.reserve(held_id, len(DATA))
    assert store.usage().free == 0
    write_all(store, held_id, Incoming.HELD, DATA)  # fits: the reservation covers it
    assert store.usage().used == len(DATA)
    assert store.usage().reserved == 0
    store.finish_partial(held_id, Incoming.HELD, sha(DATA), 50.0, owner=PEER)
    assert store.held(held_id) == HeldRecord(held_id, PEER, len(DATA), 50.0, held_id)
    assert list(store.held_originals()) == [HeldRecord(held_id, PEER, len(DATA), 50.0, held_id)]
    assert store.read_held(held_id, 5, 10) == DATA[5:15]
    assert store.image(held_id) is None  # held for another owner: not in our catalog
    assert store.usage().used == len(DATA) and store.usage().reserved == 0
    store.release_held(held_id)
    store.release_held(held_id)
    assert store.held(held_id) is None
    assert list(store.held_originals()) == []
    assert store.usage().used == 0
    with pytest.raises(NotFound):
        store.read_held(held_id, 0, 1)


def test_a_held_original_with_a_wrong_hash_is_discarded(make_store: MakeStore) -> None:
    store = make_store()
    held_id = sha(DATA)
    store.reserve(held_id, len(DATA))
    write_all(store, held_id, Incoming.HELD, DATA[:-1] + b"?")
    with pytest.raises(HashMismatch):
        store.finish_partial(held_id, Incoming.HELD, held_id, 1.0, owner=PEER)
    assert store.held(held_id) is None
    assert store.partial_offset(held_id, Incoming.HELD) == 0
    assert store.usage().used == 0


# --- the dispersion list and freeing originals -----------------------------------------------


def test_the_dispersion_list_records_holders_and_states(make_store: MakeStore) -> None:
    store = make_store()
    image_id = add_local(store, DATA).image_id
    store.set_dispersion(image_id, PEER, DispersalState.REQUESTED, 10.0)
    assert store.dispersion(image_id) == [DispersionEntry(image_id, PEER, DispersalState.REQUESTED, 10.0)]
    store.set_dispersion(image_id, PEER, DispersalState.STORED, 11.0)
    store.set_dispersion(image_id, OTHER_PEER, DispersalState.ACCEPTED, 12.0)
    assert sorted(store.dispersion(image_id), key=lambda e: e.holder) == [
        DispersionEntry(image_id, PEER, DispersalState.STORED, 11.0),
        DispersionEntry(image_id, OTHER_PEER, DispersalState.ACCEPTED, 12.0),
    ]
    assert len(list(store.dispersion_list())) == 2
    store.remove_dispersion(image_id, OTHER_PEER)
    store.remove_dispersion(image_id, OTHER_PEER)
    assert list(store.dispersion_list()) == [DispersionEntry(image_id, PEER, DispersalState.STORED, 11.0)]
    assert store.dispersion(sha(b"nothing")) == []


def test_an_original_is_freed_only_after_a_holder_stored_it(make_store: MakeStore) -> None:
    store = make_store()
    record = add_local(store, DATA, thumbnail=b"thumb")
    with pytest.raises(StoreError):
        store.free_original(record.image_id, 20.0)
    store.set_dispersion(record.image_id, PEER, DispersalState.ACCEPTED, 20.0)
    with pytest.raises(StoreError):
        store.free_original(record.image_id, 21.0)
    assert store.read_original(record.image_id, 0, 4) == DATA[:4]
    store.set_dispersion(record.image_id, PEER, DispersalState.STORED, 22.0)
    store.free_original(record.image_id, 23.0)
    got = store.image(record.image_id)
    assert got is not None and got.where is Where.DISPERSED
    assert (got.thumbnail, dict(got.metadata), got.seq) == (b"thumb", dict(record.metadata), record.seq)
    assert store.usage().used == 0
    with pytest.raises(NotFound):
        store.read_original(record.image_id, 0, 4)


def test_a_collected_original_becomes_local_again(make_store: MakeStore) -> None:
    store = make_store()
    record = add_local(store, DATA)
    store.set_dispersion(record.image_id, PEER, DispersalState.STORED, 1.0)
    store.free_original(record.image_id, 2.0)
    write_all(store, record.image_id, Incoming.ORIGINAL, DATA)
    store.finish_partial(record.image_id, Incoming.ORIGINAL, record.image_id, 3.0)
    got = store.image(record.image_id)
    assert got is not None and (got.where, got.original_at) == (Where.LOCAL, 3.0)
    assert store.read_original(record.image_id, 0, len(DATA)) == DATA


# --- sealed originals (issue 7) -----------------------------------------------------------

BIG = bytes(range(256)) * 700  # 179,200 bytes: three sealed records, the last one short


def test_the_sealed_form_is_made_once_and_outlives_the_freed_original(make_store: MakeStore) -> None:
    store = make_store()
    record = add_local(store, BIG)
    assert store.picture_key(record.image_id) is None
    form = store.sealed_form(record.image_id)
    assert form.size == sealed_size(len(BIG)) and form.size > len(BIG)
    sealed = b"".join(store.read_sealed(record.image_id, o, 7000) for o in range(0, form.size, 7000))
    assert len(sealed) == form.size and sha(sealed) == form.digest
    assert BIG[:4096] not in sealed and BIG[70_000:74_096] not in sealed  # no plaintext run
    assert store.sealed_form(record.image_id) == form  # the same key: the same bytes
    key = store.picture_key(record.image_id)
    assert key is not None and len(key) == 32
    assert store.open_sealed(record.image_id, 0, sealed) == BIG
    assert store.open_sealed(record.image_id, SEALED_RECORD, sealed[SEALED_RECORD:]) == BIG[RECORD:]
    store.set_dispersion(record.image_id, PEER, DispersalState.STORED, 1.0)
    store.free_original(record.image_id, 2.0)
    assert store.sealed_form(record.image_id) == form
    with pytest.raises(NotFound):
        store.read_sealed(record.image_id, 0, 10)
    with pytest.raises(NotFound):
        store.sealed_form(sha(b"never seen"))


def test_a_changed_sealed_record_is_refused_on_open(make_store: MakeStore) -> None:
    store = make_store()
    record = add_local(store, BIG)
    form = store.sealed_form(record.image_id)
    sealed = bytearray(store.read_sealed(record.image_id, 0, form.size))
    sealed[SEALED_RECORD + 5] ^= 1
    with pytest.raises(HashMismatch):
        store.open_sealed(record.image_id, SEALED_RECORD, bytes(sealed[SEALED_RECORD:]))
    with pytest.raises(HashMismatch):  # not on a record boundary
        store.open_sealed(record.image_id, 10, bytes(sealed[10:100]))


def test_a_sealed_original_comes_home_opened_and_verified(make_store: MakeStore) -> None:
    store = make_store()
    record = add_local(store, BIG)
    form = store.sealed_form(record.image_id)
    sealed = store.read_sealed(record.image_id, 0, form.size)
    store.set_dispersion(record.image_id, PEER, DispersalState.STORED, 1.0)
    store.free_original(record.image_id, 2.0)
    write_all(store, record.image_id, Incoming.SEALED, sealed, step=50_000)
    assert store.usage().used == form.size
    store.finish_partial(record.image_id, Incoming.SEALED, form.digest, 3.0)
    got = store.image(record.image_id)
    assert got is not None and (got.where, got.original_at) == (Where.LOCAL, 3.0)
    assert store.read_original(record.image_id, 0, len(BIG)) == BIG
    assert store.usage().used == len(BIG)
    assert store.partial_offset(record.image_id, Incoming.SEALED) == 0


@pytest.mark.parametrize("damage", ["flipped byte", "another digest"])
def test_a_sealed_original_that_fails_to_open_is_discarded(make_store: MakeStore, damage: str) -> None:
    store = make_store()
    record = add_local(store, BIG)
    form = store.sealed_form(record.image_id)
    sealed = bytearray(store.read_sealed(record.image_id, 0, form.size))
    store.set_dispersion(record.image_id, PEER, DispersalState.STORED, 1.0)
    store.free_original(record.image_id, 2.0)
    if damage == "flipped byte":
        sealed[-3] ^= 0x40  # the holder changed it, and the digest promised matches its bytes
        digest = sha(bytes(sealed))
    else:
        digest = sha(b"a holder's own idea of the digest")
    write_all(store, record.image_id, Incoming.SEALED, bytes(sealed), step=50_000)
    with pytest.raises(HashMismatch):
        store.finish_partial(record.image_id, Incoming.SEALED, digest, 3.0)
    got = store.image(record.image_id)
    assert got is not None and got.where is Where.DISPERSED
    assert store.partial_offset(record.image_id, Incoming.SEALED) == 0
    assert store.usage().used == 0


def test_a_key_made_for_a_thumbnail_is_the_one_the_original_is_sealed_with(
    make_store: MakeStore,
) -> None:
    store = make_store()
    record = add_local(store, BIG)
    key = store.picture_key(record.image_id, create=True)
    assert key is not None and store.picture_key(record.image_id, create=True) == key
    form = store.sealed_form(record.image_id)
    assert store.picture_key(record.image_id) == key
    assert sha(store.read_sealed(record.image_id, 0, form.size)) == form.digest
    peer = peer_record(b"a peer's picture")
    store.add_thumbnail(dataclasses.replace(peer, where=Where.ABSENT), 1.0)
    assert store.picture_key(peer.image_id) is None
    with pytest.raises(NotFound):  # only our own pictures get keys here
        store.picture_key(peer.image_id, create=True)


def test_a_held_original_keeps_the_digest_it_was_verified_against(make_store: MakeStore) -> None:
    store = make_store()
    sealed_bytes = b"ciphertext the holder cannot read" * 50
    image_id = sha(b"the owner's plaintext")
    store.reserve(image_id, len(sealed_bytes))
    write_all(store, image_id, Incoming.HELD, sealed_bytes)
    store.finish_partial(image_id, Incoming.HELD, sha(sealed_bytes), 4.0, owner=PEER)
    assert store.held(image_id) == HeldRecord(image_id, PEER, len(sealed_bytes), 4.0, sha(sealed_bytes))
    assert store.read_held(image_id, 0, len(sealed_bytes)) == sealed_bytes


# --- per-peer transfer state ------------------------------------------------------------------


def test_transfer_state_is_per_peer_and_starts_untransmitted(make_store: MakeStore) -> None:
    store = make_store()
    image_id = add_local(store, DATA).image_id
    assert store.transfer_state(PEER, image_id) is TransferState.UNTRANSMITTED
    store.set_transfer_state(PEER, image_id, TransferState.THUMBNAIL_SENT)
    store.set_transfer_state(OTHER_PEER, image_id, TransferState.REQUESTED, max_side=800, quality=70)
    assert store.transfer_state(PEER, image_id) is TransferState.THUMBNAIL_SENT
    assert store.transfer_state(OTHER_PEER, image_id) is TransferState.REQUESTED
    store.set_transfer_state(PEER, image_id, TransferState.ORIGINAL_SENT)
    assert store.transfer_state(PEER, image_id) is TransferState.ORIGINAL_SENT
    assert store.transfer_state(PEER, sha(b"other")) is TransferState.UNTRANSMITTED


# --- smaller copies made here -------------------------------------------------------------------


def test_a_smaller_copy_is_a_jpeg_within_the_asked_size(make_store: MakeStore) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 30, 30)).save(picture, "JPEG", quality=95)
    store = make_store()
    record = add_local(store, picture.getvalue())
    small = store.smaller_copy(record.image_id, 100, 60)
    with Image.open(io.BytesIO(small)) as image:
        assert image.format == "JPEG"
        assert max(image.size) <= 100
    with pytest.raises(NotFound):
        store.smaller_copy(sha(b"unknown"), 100, 60)


# --- our own user's decisions --------------------------------------------------------------------


def test_our_users_decisions_are_kept_apart_from_what_peers_asked(make_store: MakeStore) -> None:
    store = make_store()
    first, second = sha(b"first"), sha(b"second")
    assert store.decision(first) is None and list(store.decisions()) == []
    store.set_decision(second, Decision.REQUESTED, 5.0, max_side=800, quality=70)
    store.set_decision(first, Decision.REFUSED, 6.0)
    assert store.decision(second) == UserDecision(second, Decision.REQUESTED, 800, 70, 5.0)
    assert store.decision(first) == UserDecision(first, Decision.REFUSED, None, None, 6.0)
    assert [d.image_id for d in store.decisions()] == sorted([first, second])
    # A decision is not a transfer state of any peer, not even of this device.
    assert store.transfer_state(OWN_DEVICE, second) is TransferState.UNTRANSMITTED
    store.set_decision(second, Decision.REFUSED, 7.0)
    assert store.decision(second) == UserDecision(second, Decision.REFUSED, None, None, 7.0)
    store.clear_decision(second)
    store.clear_decision(second)
    assert store.decision(second) is None
    assert list(store.decisions()) == [UserDecision(first, Decision.REFUSED, None, None, 6.0)]


# --- zero-byte originals ---------------------------------------------------------------------------


def test_an_empty_original_finishes_from_an_empty_partial(make_store: MakeStore) -> None:
    store = make_store()
    record = peer_record(b"")
    store.add_thumbnail(record, 1.0)
    assert store.partial_offset(record.image_id, Incoming.ORIGINAL) == 0
    store.finish_partial(record.image_id, Incoming.ORIGINAL, sha(b""), 2.0)
    got = store.image(record.image_id)
    assert got is not None and got.where is Where.LOCAL and got.size == 0
    assert store.read_original(record.image_id, 0, 10) == b""
    assert store.usage().used == 0


def test_an_empty_original_is_held_for_its_owner(make_store: MakeStore) -> None:
    store = make_store()
    empty = sha(b"")
    store.reserve(empty, 0)
    store.finish_partial(empty, Incoming.HELD, empty, 3.0, owner=PEER)
    assert store.held(empty) == HeldRecord(empty, PEER, 0, 3.0, empty)
    assert store.read_held(empty, 0, 5) == b""
    assert store.usage().reserved == 0


# --- room, counted as it goes -----------------------------------------------------------------------


def test_usage_follows_every_change_of_room(make_store: MakeStore) -> None:
    """Running totals (the in-memory store keeps them for speed) agree with the card's count."""
    store = make_store(10_000)
    local = add_local(store, DATA)
    held_id = sha(b"held" * 100)
    store.reserve(held_id, 400)
    write_all(store, held_id, Incoming.HELD, (b"held" * 100)[:250])
    assert (store.usage().used, store.usage().reserved) == (len(DATA) + 250, 150)
    store.reserve(held_id, 300)
    assert store.usage().reserved == 50
    store.discard_partial(held_id, Incoming.HELD)
    assert (store.usage().used, store.usage().reserved) == (len(DATA), 300)
    write_all(store, held_id, Incoming.HELD, b"held" * 100)
    store.finish_partial(held_id, Incoming.HELD, held_id, 4.0, owner=PEER)
    assert (store.usage().used, store.usage().reserved) == (len(DATA) + 400, 0)
    store.set_dispersion(local.image_id, PEER, DispersalState.STORED, 5.0)
    store.free_original(local.image_id, 6.0)
    store.release_held(held_id)
    assert (store.usage().used, store.usage().reserved) == (0, 0)
    recount = getattr(store, "recount", None)
    if recount is not None:
        assert recount() == store.usage()


def test_an_empty_picture_can_be_captured_and_read(make_store: MakeStore) -> None:
    store = make_store()
    record = add_local(store, b"")
    assert (record.image_id, record.size, record.where) == (sha(b""), 0, Where.LOCAL)
    assert store.read_original(record.image_id, 0, 10) == b""
