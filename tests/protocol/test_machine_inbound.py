"""protocol/inbound.py alone, without a Node: incoming streams checked, and what they tell.

The machine is built from a MemoryStore, a NodeConfig and links made by hand; the
rig applies the effects it returns to those links as the node does, and checks each
step's state against the machine's own table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.connection import Connection
from protocol.effects import (
    Cancel,
    Closed,
    CollectedBytes,
    CollectionIn,
    CollectionLost,
    Effect,
    Emit,
    HeldIn,
    Opened,
    OursAgain,
    PullOver,
    PullsMayGo,
    ReadOutIn,
    ReadOutLost,
    Send,
    Settled,
    Tell,
)
from protocol.errors import RemoteProtocolError
from protocol.inbound import TRANSITIONS, Inbound, StreamState, state_of
from protocol.messages import Chunk, OriginalComplete, OriginalHeader, Purpose, RefuseOriginal, Role
from protocol.peer import Expected, Link
from protocol.scheduler import Scheduler
from protocol.store import ImageRecord, Incoming, Where
from sim.memstore import MemoryStore

US = hashlib.sha256(b"desk").hexdigest()
CAM = hashlib.sha256(b"camera").hexdigest()
NOW = 1_700_000_000.0
DATA = bytes(range(256)) * 10
IMAGE = hashlib.sha256(DATA).hexdigest()


def record(origin: str = CAM, size: int = len(DATA)) -> ImageRecord:
    return ImageRecord(image_id=IMAGE, origin=origin, seq=1, name="p.jpg", size=size,
                       mime="image/jpeg", capture_time=NOW, metadata={}, thumbnail=b"t",
                       where=Where.ABSENT, thumbnail_at=NOW)


class Rig:
    """An Inbound machine, its card and one link to the camera, effects applied as the node does."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.store = MemoryStore(US, capacity)
        self.link = Link(peer_id=CAM, conn=Connection(US, expected_peer=CAM),
                         scheduler=Scheduler(), connected_at=NOW, ready=True)
        self.inbound = Inbound(self.store, NodeConfig(name="desk", role=Role.DESK),
                               {CAM: self.link})

    def expect(self, purpose: Purpose, kind: Incoming | None, **kw: object) -> Expected:
        expected = Expected(IMAGE, purpose, kind, 0, size=len(DATA), **kw)  # type: ignore[arg-type]
        self.link.expect(expected)
        return expected

    def step(self, purpose: Purpose, what: str, call: Callable[[], list[Effect]]) -> list[Effect]:
        before = state_of(self.link, IMAGE, purpose)
        effects = call()
        for effect in effects:  # as Node.apply does
            key = (IMAGE, purpose)
            if isinstance(effect, Opened):
                self.link.streams[key] = effect.stream
            elif isinstance(effect, Closed):
                del self.link.streams[key]
                del self.link.expected[key]
                if effect.crossed:
                    self.link.cancelled.add(key)
            elif isinstance(effect, Settled):
                self.link.cancelled.discard(key)
            elif isinstance(effect, Cancel):
                self.link.cancel(effect.image_id, effect.purpose)
        after = state_of(self.link, IMAGE, purpose)
        assert after in TRANSITIONS[(before, what)], (before, what, after)
        return effects

    def header(self, purpose: Purpose, **changes: object) -> list[Effect]:
        fields: dict[str, object] = dict(image_id=IMAGE, purpose=purpose, size=len(DATA),
                                         digest=IMAGE, offset=0, destination=US, owner=CAM)
        fields.update(changes)
        msg = OriginalHeader(**fields)  # type: ignore[arg-type]
        return self.step(purpose, "header", lambda: self.inbound.on_header(self.link, msg, NOW))

    def chunk(self, purpose: Purpose, offset: int, data: bytes) -> list[Effect]:
        msg = Chunk(IMAGE, purpose, offset, data)
        return self.step(purpose, "chunk", lambda: self.inbound.on_chunk(self.link, msg, NOW))

    def complete(self, purpose: Purpose, digest: str = IMAGE) -> list[Effect]:
        msg = OriginalComplete(IMAGE, purpose, digest)
        return self.step(purpose, "complete", lambda: self.inbound.on_complete(self.link, msg, NOW))

    def whole(self, purpose: Purpose, data: bytes = DATA) -> list[Effect]:
        out = self.header(purpose)
        for offset in range(0, len(data), 1000):
            out += self.chunk(purpose, offset, data[offset : offset + 1000])
        return out + self.complete(purpose)


def told(effects: list[Effect]) -> list[object]:
    return [e.notice for e in effects if isinstance(e, Tell)]


def events(effects: list[Effect]) -> list[ev.NodeEvent]:
    return [e.event for e in effects if isinstance(e, Emit)]


def test_a_requested_original_lands_on_the_card_and_frees_its_pull() -> None:
    rig = Rig()
    rig.store.add_thumbnail(record(), NOW)
    rig.expect(Purpose.SYNC, Incoming.ORIGINAL)
    out = rig.whole(Purpose.SYNC)
    stored = rig.store.image(IMAGE)
    assert stored is not None and stored.where is Where.LOCAL
    assert told(out) == [PullOver(CAM, IMAGE), PullsMayGo(NOW)]
    assert events(out)[-1] == ev.OriginalArrived(CAM, IMAGE, Purpose.SYNC)
    progress = [e for e in events(out) if isinstance(e, ev.TransferProgress)]
    assert [p.done for p in progress] == [1000, 2000, len(DATA)]
    # An urgent ask may have crossed the completion: its repeat is ignored, not a lie.
    assert state_of(rig.link, IMAGE, Purpose.SYNC) is StreamState.CANCELLED
    assert rig.header(Purpose.SYNC) == []


def test_a_background_pull_leaves_nothing_behind_once_complete() -> None:
    rig = Rig()
    rig.store.add_thumbnail(record(), NOW)
    rig.expect(Purpose.SYNC, Incoming.ORIGINAL, urgent=False)
    rig.whole(Purpose.SYNC)
    assert state_of(rig.link, IMAGE, Purpose.SYNC) is StreamState.NONE


def test_a_read_out_is_handed_out_as_it_passes_and_is_told_done_with_its_digest() -> None:
    rig = Rig()
    rig.expect(Purpose.READOUT, None)
    out = rig.whole(Purpose.READOUT)
    chunks = [e for e in events(out) if isinstance(e, ev.ReadOutChunk)]
    assert b"".join(c.data for c in chunks) == DATA
    assert told(out) == [ReadOutIn(IMAGE, IMAGE)]
    assert rig.store.image(IMAGE) is None  # nothing written to the card


def test_a_read_out_whose_bytes_do_not_hash_is_lost_and_the_peer_cut_off() -> None:
    rig = Rig()
    rig.expect(Purpose.READOUT, None)
    rig.header(Purpose.READOUT)
    rig.chunk(Purpose.READOUT, 0, b"x" * len(DATA))
    with pytest.raises(RemoteProtocolError) as raised:
        rig.inbound.on_complete(rig.link, OriginalComplete(IMAGE, Purpose.READOUT, IMAGE), NOW)
    assert raised.value.code == "hash-mismatch"
    # What it asked for before refusing the peer is kept for the node to apply.
    left = rig.inbound.take()
    assert told(left) == [ReadOutLost(IMAGE, "the bytes did not match the digest")]
    assert any(isinstance(e, Closed) for e in left)


def test_a_relayed_collection_passes_its_bytes_to_the_collections() -> None:
    rig = Rig()
    rig.expect(Purpose.COLLECT, None, digest=IMAGE)
    out = rig.whole(Purpose.COLLECT)
    got = [n for n in told(out) if isinstance(n, CollectedBytes)]
    assert b"".join(n.data for n in got) == DATA and {n.peer_id for n in got} == {CAM}
    assert told(out)[-1] == CollectionIn(CAM, IMAGE, 0, NOW)


def test_our_own_original_home_again_is_told_to_dispersal() -> None:
    rig = Rig()
    rig.store.add_thumbnail(record(origin=US), NOW)
    rig.expect(Purpose.COLLECT, Incoming.ORIGINAL)
    out = rig.whole(Purpose.COLLECT)
    assert told(out) == [OursAgain(rig.store.image(IMAGE)), CollectionIn(CAM, IMAGE, 0, NOW)]  # type: ignore[arg-type]


def test_a_held_original_is_stored_for_its_owner_and_told_to_dispersal() -> None:
    rig = Rig()
    rig.store.reserve(IMAGE, len(DATA))
    rig.expect(Purpose.DISPERSE, Incoming.HELD, owner=CAM)
    out = rig.whole(Purpose.DISPERSE)
    held = rig.store.held(IMAGE)
    assert held is not None and held.owner == CAM
    assert told(out) == [HeldIn(CAM, IMAGE, IMAGE, NOW)]


def test_a_resumed_collection_that_does_not_hash_starts_over_without_blaming_this_holder() -> None:
    rig = Rig()
    rig.store.add_thumbnail(record(origin=US), NOW)
    rig.store.write_partial(IMAGE, Incoming.ORIGINAL, 0, b"y" * 1000)  # another holder's bytes
    expected = Expected(IMAGE, Purpose.COLLECT, Incoming.ORIGINAL, 1000, size=len(DATA))
    rig.link.expect(expected)
    rig.header(Purpose.COLLECT, offset=1000)
    rig.chunk(Purpose.COLLECT, 1000, DATA[1000:])
    out = rig.complete(Purpose.COLLECT)
    assert told(out) == [CollectionLost(CAM, IMAGE, "the bytes did not match the digest")]


def test_a_card_that_fills_mid_stream_cancels_it_refuses_the_rest_and_says_why() -> None:
    rig = Rig(capacity=1500)
    rig.store.add_thumbnail(record(), NOW)
    rig.expect(Purpose.SYNC, Incoming.ORIGINAL)
    rig.header(Purpose.SYNC)
    rig.chunk(Purpose.SYNC, 0, DATA[:1000])
    out = rig.chunk(Purpose.SYNC, 1000, DATA[1000:2000])
    assert out[0] == Cancel(CAM, IMAGE, Purpose.SYNC)
    assert told(out) == [PullOver(CAM, IMAGE)]
    assert [e.message for e in out if isinstance(e, Send)] == [RefuseOriginal(IMAGE)]
    assert [type(e) for e in events(out)] == [ev.RequestPending]
    # What was on its way is ignored; its completion settles it.
    assert rig.chunk(Purpose.SYNC, 2000, DATA[2000:]) == []
    assert rig.complete(Purpose.SYNC) == [Settled(CAM, IMAGE, Purpose.SYNC)]


def test_a_collection_the_card_cannot_take_is_lost_to_the_collections() -> None:
    rig = Rig(capacity=1500)
    rig.store.add_thumbnail(record(origin=US), NOW)
    rig.expect(Purpose.COLLECT, Incoming.ORIGINAL)
    rig.header(Purpose.COLLECT)
    rig.chunk(Purpose.COLLECT, 0, DATA[:1000])
    out = rig.chunk(Purpose.COLLECT, 1000, DATA[1000:2000])
    assert told(out) == [PullOver(CAM, IMAGE), CollectionLost(CAM, IMAGE, told_reason(out))]
    assert not [e for e in out if isinstance(e, Send)]


def told_reason(effects: list[Effect]) -> str:
    lost = [n for n in told(effects) if isinstance(n, CollectionLost)]
    assert lost and "free" in lost[0].reason
    return lost[0].reason


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"destination": CAM}, "wrong-destination"),
        ({"digest": hashlib.sha256(b"other").hexdigest()}, "bad-digest"),
        ({"size": len(DATA) + 1}, "bad-size"),
        ({"offset": 1}, "bad-offset"),
    ],
)
def test_a_header_that_is_not_what_we_asked_for_cuts_the_peer_off(
    change: dict[str, object], code: str
) -> None:
    rig = Rig()
    rig.expect(Purpose.SYNC, Incoming.ORIGINAL)
    with pytest.raises(RemoteProtocolError) as raised:
        rig.header(Purpose.SYNC, **change)
    assert raised.value.code == code
    assert state_of(rig.link, IMAGE, Purpose.SYNC) is StreamState.EXPECTED


def test_streams_nobody_asked_for_and_chunks_out_of_place_cut_the_peer_off() -> None:
    rig = Rig()
    with pytest.raises(RemoteProtocolError, match="nobody asked for"):
        rig.header(Purpose.SYNC)
    with pytest.raises(RemoteProtocolError) as raised:
        rig.inbound.on_chunk(rig.link, Chunk(IMAGE, Purpose.SYNC, 0, b"x"), NOW)
    assert raised.value.code == "unexpected-chunk"
    rig.expect(Purpose.SYNC, Incoming.ORIGINAL)
    rig.header(Purpose.SYNC)
    with pytest.raises(RemoteProtocolError) as raised:
        rig.inbound.on_chunk(rig.link, Chunk(IMAGE, Purpose.SYNC, 10, b"x"), NOW)
    assert raised.value.code == "bad-offset"
    with pytest.raises(RemoteProtocolError) as raised:
        rig.inbound.on_complete(rig.link, OriginalComplete(IMAGE, Purpose.SYNC, IMAGE), NOW)
    assert raised.value.code == "bad-complete"


def test_a_dispersal_naming_another_owner_is_refused() -> None:
    rig = Rig()
    rig.expect(Purpose.DISPERSE, Incoming.HELD, owner=CAM)
    with pytest.raises(RemoteProtocolError) as raised:
        rig.header(Purpose.DISPERSE, owner=US)
    assert raised.value.code == "bad-owner"
