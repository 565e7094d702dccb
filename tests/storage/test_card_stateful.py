"""The card against a simple model: capture, free, hold, partials, reopen; room always adds up.

After every step: ``usage().used`` equals the model's count and the bytes actually on disk,
used + reserved never passes the capacity, and the catalog's LOCAL pictures are the model's.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)

from protocol.store import CardFullError, DispersalState, ImageRecord, Incoming, Where
from storage.card import Card, iter_card_files

DEVICE = "a" * 64
PEER = "b" * 64
CAPACITY = 6000

payloads = st.binary(min_size=1, max_size=2500)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CardModel(RuleBasedStateMachine):
    local_ids = Bundle("local_ids")
    held_ids = Bundle("held_ids")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="cammesh-card-model-"))
        self.card = Card.create(self.folder / "card", device_id=DEVICE, name="m", capacity=CAPACITY, reserve=0)
        self.local: dict[str, int] = {}  # image id -> size of a LOCAL original
        self.held: dict[str, int] = {}
        self.partial: dict[str, bytes] = {}  # incoming HELD partials by id, the full bytes promised
        self.partial_done: dict[str, int] = {}
        self.reserved: dict[str, int] = {}

    def teardown(self) -> None:
        self.card.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # the model's arithmetic, as the contract states it
    def used(self) -> int:
        return sum(self.local.values()) + sum(self.held.values()) + sum(self.partial_done.values())

    def reserved_now(self) -> int:
        return sum(max(0, size - self.partial_done.get(i, 0)) for i, size in self.reserved.items())

    def free(self) -> int:
        return max(0, CAPACITY - self.used() - self.reserved_now())

    @rule(target=local_ids, data=payloads)
    def capture(self, data: bytes) -> object:
        image_id = sha(data)
        if image_id in self.local:
            assert self.card.add_local(data, name="dup.jpg", now=1.0).image_id == image_id
            return multiple()
        if len(data) > self.free():
            before = self.card.images()
            try:
                self.card.add_local(data, name="x.jpg", now=1.0)
            except CardFullError:
                assert self.card.images() == before
                return multiple()
            raise AssertionError("a capture past the free room was accepted")
        record = self.card.add_local(data, name="x.jpg", now=1.0)
        assert record.where is Where.LOCAL and record.size == len(data)
        self.local[image_id] = len(data)
        return image_id

    @rule(image_id=consumes(local_ids))
    def free_original(self, image_id: str) -> None:
        self.card.set_dispersion(image_id, PEER, DispersalState.STORED, 2.0)
        self.card.free_original(image_id, 3.0)
        del self.local[image_id]

    @rule(data=payloads)
    def start_holding(self, data: bytes) -> None:
        image_id = sha(data)
        if image_id in self.partial or image_id in self.held:
            return
        if len(data) > self.free():
            try:
                self.card.reserve(image_id, len(data))
            except CardFullError:
                return
            raise AssertionError("a reservation past the free room was accepted")
        self.card.reserve(image_id, len(data))
        self.reserved[image_id] = len(data)
        self.partial[image_id] = data
        self.partial_done[image_id] = 0

    @precondition(lambda self: bool(self.partial))
    @rule(step=st.integers(min_value=1, max_value=2500), which=st.randoms(use_true_random=False))
    def receive_chunk(self, step: int, which: object) -> None:
        image_id = sorted(self.partial)[which.randrange(len(self.partial))]  # type: ignore[attr-defined]
        data, done = self.partial[image_id], self.partial_done[image_id]
        chunk = data[done : done + step]
        if not chunk:
            return
        self.card.write_partial(image_id, Incoming.HELD, done, chunk)  # covered by the reservation
        self.partial_done[image_id] = done + len(chunk)

    @precondition(lambda self: any(self.partial_done[i] == len(d) for i, d in self.partial.items()))
    @rule(target=held_ids)
    def finish_holding(self) -> str:
        image_id = next(i for i, d in sorted(self.partial.items()) if self.partial_done[i] == len(d))
        self.card.finish_partial(image_id, Incoming.HELD, image_id, 4.0, owner=PEER)
        self.held[image_id] = len(self.partial.pop(image_id))
        del self.partial_done[image_id], self.reserved[image_id]
        return image_id

    @precondition(lambda self: bool(self.partial))
    @rule()
    def give_up_holding(self) -> None:
        image_id = sorted(self.partial)[0]
        self.card.discard_partial(image_id, Incoming.HELD)
        self.card.unreserve(image_id)
        del self.partial[image_id], self.partial_done[image_id], self.reserved[image_id]

    @rule(image_id=consumes(held_ids))
    def release_held(self, image_id: str) -> None:
        assert self.card.read_held(image_id, 0, 10**6) is not None
        self.card.release_held(image_id)
        del self.held[image_id]

    @rule(data=payloads)
    def peer_thumbnail(self, data: bytes) -> None:
        seq = len(self.card.images_after(PEER, 0)) + 1
        record = ImageRecord(sha(data), PEER, seq, "p.jpg", len(data), "image/jpeg", None, {}, b"t", Where.ABSENT)
        if self.card.image(record.image_id) is None:
            assert self.card.add_thumbnail(record, 1.0)

    @rule()
    def reopen(self) -> None:
        self.card.close()
        self.card = Card.open(self.folder / "card")
        assert self.card.recovered == []

    @invariant()
    def room_adds_up(self) -> None:
        usage = self.card.usage()
        on_disk = sum(f.stat().st_size for f in iter_card_files(self.card.path))
        assert usage.used == self.used() == on_disk
        assert usage.reserved == self.reserved_now()
        assert usage.used + usage.reserved <= CAPACITY
        assert usage.free == self.free()

    @invariant()
    def catalog_matches(self) -> None:
        local = {r.image_id for r in self.card.images() if r.where is Where.LOCAL}
        assert local == set(self.local)
        assert {h.image_id for h in self.card.held_originals()} == set(self.held)


CardModel.TestCase.settings = settings(settings(), stateful_step_count=30)
test_card_against_the_model = CardModel.TestCase
