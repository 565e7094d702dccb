"""The simulator's in-memory card: its own extras (add_local, crash) and a twin test against the real Card.

The shared Store contract is in tests/contract/; here random sequences of calls
go to a MemoryStore and a real ``storage.card.Card`` side by side, and every
answer, error and usage figure must agree.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from protocol.store import (
    CardFullError,
    DispersalState,
    HashMismatch,
    ImageRecord,
    Incoming,
    NotFound,
    StoreError,
    Where,
)
from sim.memstore import MemoryStore
from tests.conftest import long_profile

OWN = "a" * 64
PEER = "b" * 64
OTHER_PEER = "c" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def peer_record(data: bytes, seq: int) -> ImageRecord:
    return ImageRecord(
        image_id=sha(data),
        origin=PEER,
        seq=seq,
        name=f"P{seq}.JPG",
        size=len(data),
        mime="image/jpeg",
        capture_time=None,
        metadata={"iso": 100},
        thumbnail=b"t",
        where=Where.LOCAL,
    )


# --- add_local and original_bytes ------------------------------------------------------------


def test_add_local_numbers_our_pictures_and_keeps_their_bytes() -> None:
    store = MemoryStore(OWN, 10_000)
    first = store.add_local(
        b"one", name="A.JPG", now=5.0, capture_time=4.0, metadata={"iso": 1}, thumbnail=b"th"
    )
    second = store.add_local(b"two", name="B.JPG", now=6.0)
    assert (first.origin, first.seq, second.seq) == (OWN, 1, 2)
    assert (first.image_id, first.where, first.original_at, first.thumbnail_at) == (
        sha(b"one"),
        Where.LOCAL,
        5.0,
        None,
    )
    assert (first.capture_time, dict(first.metadata), first.thumbnail) == (4.0, {"iso": 1}, b"th")
    assert store.original_bytes(first.image_id) == b"one"
    assert store.original_bytes(sha(b"never")) is None
    assert store.usage().used == 6


def test_add_local_of_a_picture_known_by_thumbnail_gives_it_its_original() -> None:
    store = MemoryStore(OWN, 10_000)
    store.add_thumbnail(peer_record(b"peer pic", 1), now=1.0)
    record = store.add_local(b"peer pic", name="copy.jpg", now=2.0)
    assert (record.origin, record.seq, record.where) == (PEER, 1, Where.LOCAL)
    assert store.original_bytes(record.image_id) == b"peer pic"


def test_capacity_counts_originals_held_partials_smaller_copies_and_reservations() -> None:
    store = MemoryStore(OWN, 10_000)
    store.add_local(b"o" * 100, name="o", now=0.0)  # 100 original
    store.add_thumbnail(peer_record(b"p" * 1000, 1), now=0.0)
    store.write_partial(sha(b"p" * 1000), Incoming.ORIGINAL, 0, b"p" * 300)  # 300 partial
    small = b"s" * 40
    store.write_partial(sha(b"p" * 1000), Incoming.SMALLER, 0, small)
    store.finish_partial(sha(b"p" * 1000), Incoming.SMALLER, sha(small), 1.0)  # 40 smaller
    held = b"h" * 500
    store.reserve(sha(held), 500)
    store.write_partial(sha(held), Incoming.HELD, 0, held[:200])  # 200 partial, 300 reserved
    usage = store.usage()
    assert (usage.used, usage.reserved) == (100 + 300 + 40 + 200, 300)
    store.write_partial(sha(held), Incoming.HELD, 200, held[200:])
    store.finish_partial(sha(held), Incoming.HELD, sha(held), 2.0, owner=PEER)  # 500 held
    usage = store.usage()
    assert (usage.used, usage.reserved, usage.free) == (100 + 300 + 40 + 500, 0, 10_000 - 940)
    assert store.read_held(sha(held), 0, 10) == held[:10]


@pytest.mark.parametrize("call", ["add_local", "write_partial", "reserve", "held_write"])
def test_card_full_leaves_nothing_behind(call: str) -> None:
    store = MemoryStore(OWN, 1000)
    store.add_local(b"x" * 600, name="x", now=0.0)
    store.reserve(sha(b"h"), 300)
    before = (store.usage(), list(store.images()), store.partial_offset(sha(b"h"), Incoming.HELD))
    with pytest.raises(CardFullError):
        if call == "add_local":
            store.add_local(b"y" * 101, name="y", now=1.0)
        elif call == "write_partial":
            store.write_partial(sha(b"z"), Incoming.ORIGINAL, 0, b"z" * 101)
        elif call == "reserve":
            store.reserve(sha(b"r"), 101)
        else:  # past its own reservation by one byte more than is free
            store.write_partial(sha(b"h"), Incoming.HELD, 0, b"h" * 401)
    after = (store.usage(), list(store.images()), store.partial_offset(sha(b"h"), Incoming.HELD))
    assert after == before
    assert store.partial_offset(sha(b"z"), Incoming.ORIGINAL) == 0


# --- crash ------------------------------------------------------------------------------------


def test_a_crash_may_tear_only_the_last_partial_write() -> None:
    torn_any = False
    for seed in range(40):
        store = MemoryStore(OWN, 10_000)
        store.write_partial(sha(b"older"), Incoming.HELD, 0, b"o" * 100)
        store.write_partial(sha(b"last"), Incoming.ORIGINAL, 0, b"l" * 100)
        store.write_partial(sha(b"last"), Incoming.ORIGINAL, 100, b"l" * 50)
        used = store.usage().used
        torn = store.crash(random.Random(seed))
        assert 0 <= torn <= 50  # never more than the last write appended
        assert store.partial_offset(sha(b"last"), Incoming.ORIGINAL) == 150 - torn
        assert store.partial_offset(sha(b"older"), Incoming.HELD) == 100
        assert store.usage().used == used - torn
        # The transfer resumes where the card says it is.
        offset = store.partial_offset(sha(b"last"), Incoming.ORIGINAL)
        store.write_partial(sha(b"last"), Incoming.ORIGINAL, offset, b"l" * (150 - offset))
        torn_any = torn_any or torn > 0
    assert torn_any, "no seed tore a write: crash never tears"


def test_a_crash_tears_nothing_finished_and_never_twice() -> None:
    for seed in range(20):
        store = MemoryStore(OWN, 10_000)
        record = store.add_local(b"pic", name="p", now=0.0)
        store.write_partial(sha(b"h"), Incoming.HELD, 0, b"h")
        store.finish_partial(sha(b"h"), Incoming.HELD, sha(b"h"), 1.0, owner=PEER)
        assert store.crash(random.Random(seed)) == 0
        assert store.read_held(sha(b"h"), 0, 9) == b"h"
        assert store.original_bytes(record.image_id) == b"pic"
        store.write_partial(sha(b"w"), Incoming.ORIGINAL, 0, b"w" * 10)
        store.crash(random.Random(seed))
        offset = store.partial_offset(sha(b"w"), Incoming.ORIGINAL)
        assert store.crash(random.Random(seed)) == 0  # the next crash finds nothing unsynced
        assert store.partial_offset(sha(b"w"), Incoming.ORIGINAL) == offset


def test_a_crash_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> tuple[int, int]:
        store = MemoryStore(OWN, 10_000)
        store.write_partial(sha(b"d"), Incoming.HELD, 0, b"d" * 1000)
        return store.crash(random.Random(seed)), store.partial_offset(sha(b"d"), Incoming.HELD)

    assert [run(s) for s in range(10)] == [run(s) for s in range(10)]


# --- the twin test: MemoryStore and the real Card answer alike ------------------------------------

PICTURES = [bytes([65 + i]) * size for i, size in enumerate((120, 260, 410, 30))]
CAPACITY = 1200


def outcome(call: Any) -> Any:
    """What a call returned, or the kind of store error it raised."""
    try:
        result = call()
    except StoreError as exc:
        for kind in (CardFullError, HashMismatch, NotFound):
            if isinstance(exc, kind):
                return kind.__name__
        return "StoreError"
    if isinstance(result, list | tuple) or (
        result is not None
        and hasattr(result, "__iter__")
        and not isinstance(result, bytes | str | dict)
    ):
        return list(result)
    return result


class TwinStores(RuleBasedStateMachine):
    """The same calls to a MemoryStore and a Card; the answers must agree."""

    def __init__(self) -> None:
        super().__init__()
        from storage.card import Card

        # The twin test is about answers, not durability: a RAM disk spares the shared
        # machine thousands of fsyncs.
        ram = Path("/dev/shm")
        self.folder = Path(
            tempfile.mkdtemp(prefix="cammesh-twin-", dir=ram if ram.is_dir() else None)
        )
        self.card = Card.create(
            self.folder / "card", device_id=OWN, name="twin", capacity=CAPACITY, reserve=0
        )
        self.memory = MemoryStore(OWN, CAPACITY)
        self.peer_seq = 0

    def teardown(self) -> None:
        self.card.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def both(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        got = outcome(lambda: getattr(self.memory, method)(*args, **kwargs))
        want = outcome(lambda: getattr(self.card, method)(*args, **kwargs))
        assert got == want, f"{method}{args}: memory gave {got!r}, the card {want!r}"
        return got

    pictures = st.sampled_from(PICTURES)
    kinds = st.sampled_from(Incoming)

    @rule(data=pictures, now=st.floats(0, 100))
    def capture(self, data: bytes, now: float) -> None:
        self.both("add_local", data, name="IMG.JPG", now=now)

    @rule(data=pictures)
    def thumbnail_from_peer(self, data: bytes) -> None:
        self.peer_seq += 1
        self.both("add_thumbnail", peer_record(data, self.peer_seq), 1.0)

    @rule(data=pictures, kind=kinds, step=st.integers(1, 300), wrong_offset=st.booleans())
    def write_partial(self, data: bytes, kind: Incoming, step: int, wrong_offset: bool) -> None:
        offset = self.memory.partial_offset(sha(data), kind)
        assert offset == self.card.partial_offset(sha(data), kind)
        self.both(
            "write_partial",
            sha(data),
            kind,
            offset + wrong_offset,
            data[offset : offset + step] or b"!",
        )

    @rule(data=pictures, kind=kinds)
    def write_the_rest(self, data: bytes, kind: Incoming) -> None:
        offset = self.memory.partial_offset(sha(data), kind)
        if offset < len(data):
            self.both("write_partial", sha(data), kind, offset, data[offset:])

    @rule(data=pictures, kind=kinds)
    def receive_whole(self, data: bytes, kind: Incoming) -> None:
        self.write_the_rest(data, kind)
        self.finish_partial(data, kind, right=True)

    @rule(data=pictures, kind=kinds, right=st.booleans())
    def finish_partial(self, data: bytes, kind: Incoming, right: bool) -> None:
        partial = data[: self.memory.partial_offset(sha(data), kind)]
        digest = sha(partial) if right else sha(b"lie")
        self.both("finish_partial", sha(data), kind, digest, 2.0, owner=PEER)

    @rule(data=pictures, kind=kinds)
    def discard_partial(self, data: bytes, kind: Incoming) -> None:
        self.both("discard_partial", sha(data), kind)

    @rule(data=pictures, size=st.integers(0, 700))
    def reserve(self, data: bytes, size: int) -> None:
        self.both("reserve", sha(data), size)

    @rule(data=pictures)
    def unreserve(self, data: bytes) -> None:
        self.both("unreserve", sha(data))

    @rule(data=pictures)
    def release_held(self, data: bytes) -> None:
        self.both("release_held", sha(data))

    holders = st.sampled_from((PEER, OTHER_PEER))

    @rule(data=pictures, holder=holders, state=st.sampled_from(DispersalState))
    def set_dispersion(self, data: bytes, holder: str, state: DispersalState) -> None:
        self.both("set_dispersion", sha(data), holder, state, 3.0)

    @rule(data=pictures, holder=holders)
    def remove_dispersion(self, data: bytes, holder: str) -> None:
        self.both("remove_dispersion", sha(data), holder)
        self.both("dispersion", sha(data))

    @rule(data=pictures)
    def free_original(self, data: bytes) -> None:
        self.both("free_original", sha(data), 4.0)

    @rule(data=pictures, offset=st.integers(0, 500), length=st.integers(0, 500))
    def read(self, data: bytes, offset: int, length: int) -> None:
        want = data[offset : offset + length]
        assert self.both("read_original", sha(data), offset, length) in ("NotFound", want)
        held = self.both("read_held", sha(data), offset, length)  # may be a prefix: see finish
        assert held == "NotFound" or want.startswith(held)

    @invariant()
    def same_cards(self) -> None:
        for name in ("usage", "images", "seen", "held_originals", "dispersion_list"):
            self.both(name)
        for data in PICTURES:
            assert self.memory.original_bytes(sha(data)) in (None, data)
        usage = self.memory.usage()
        assert usage.used + usage.reserved <= CAPACITY
        assert self.memory.recount() == usage  # the running totals never drift


# Long runs of calls reach the states where the two could part (a smaller copy, a full card).
# The long profile's 2000 examples of 100 steps would pass the 300 s test timeout.
TwinStores.TestCase.settings = (
    settings(max_examples=400, stateful_step_count=100)
    if long_profile()
    else settings(stateful_step_count=50)
)
test_memory_store_answers_like_the_card = TwinStores.TestCase


def test_a_torn_write_is_taken_out_of_the_running_totals() -> None:
    for seed in range(20):
        store = MemoryStore(OWN, 10_000)
        data = random.Random(seed).randbytes(3000)
        store.reserve(sha(data), 3000)
        store.write_partial(sha(data), Incoming.HELD, 0, data[:1000])
        store.write_partial(sha(data), Incoming.HELD, 1000, data[1000:2500])
        store.crash(random.Random(seed))
        assert store.recount() == store.usage()


def test_listings_are_snapshots_that_follow_every_change() -> None:
    """A listing walked while the card changes is the card as it was; the next one is current."""
    store = MemoryStore(OWN, 10_000)
    ids = [store.add_local(data, name=f"{i}.JPG", now=float(i)).image_id for i, data in enumerate(PICTURES)]
    for image_id in ids:
        store.set_dispersion(image_id, PEER, DispersalState.REQUESTED, 1.0)
    before_list, before_images = store.dispersion_list(), store.images()
    for entry in before_list:  # the protocol changes the list while it walks it
        store.set_dispersion(entry.image_id, OTHER_PEER, DispersalState.REQUESTED, 2.0)
        store.remove_dispersion(entry.image_id, PEER)
    store.set_dispersion(ids[0], PEER, DispersalState.STORED, 3.0)
    store.free_original(ids[0], 4.0)
    assert [(e.image_id, e.holder) for e in before_list] == sorted((i, PEER) for i in ids)
    assert [r.where for r in before_images] == [Where.LOCAL] * len(ids)
    assert [(e.image_id, e.holder, e.state) for e in store.dispersion_list()] == sorted(
        [(i, OTHER_PEER, DispersalState.REQUESTED) for i in ids]
        + [(ids[0], PEER, DispersalState.STORED)]
    )
    assert [e.holder for e in store.dispersion(ids[0])] == [PEER, OTHER_PEER]
    assert store.image(ids[0]) is not None and store.image(ids[0]).where is Where.DISPERSED  # type: ignore[union-attr]
    assert [r.where for r in store.images() if r.image_id == ids[0]] == [Where.DISPERSED]
    store.remove_dispersion(ids[1], OTHER_PEER)
    store.remove_dispersion(ids[1], OTHER_PEER)  # nothing left to remove: nothing happens
    assert ids[1] not in {e.image_id for e in store.dispersion_list()}
    assert store.dispersion(ids[1]) == []
