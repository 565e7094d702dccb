"""protocol/readout.py alone, without a Node: our user's read-outs, as effects.

Built from a MemoryStore, a NodeConfig, links made by hand, a names map and the
offerers the pulls would know; every input's state change is checked against the
machine's own table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.connection import Connection
from protocol.effects import CollectForReader, Effect, Emit, Expect, Rearm, Send, Tell
from protocol.messages import Purpose, ReadOut, Role
from protocol.peer import Link
from protocol.readout import TRANSITIONS, ReadOuts, ReadOutState
from protocol.scheduler import Scheduler
from protocol.store import DispersalState, ImageRecord, Incoming, Where
from sim.memstore import MemoryStore

US = hashlib.sha256(b"desk").hexdigest()
CAM = hashlib.sha256(b"camera").hexdigest()
OTHER = hashlib.sha256(b"other camera").hexdigest()
NOW = 1_700_000_000.0
DATA = bytes(range(256)) * 600  # 153,600 bytes: three chunks of 64 KiB
RETRY = 5.0


def theirs(data: bytes = DATA) -> ImageRecord:
    return ImageRecord(image_id=hashlib.sha256(data).hexdigest(), origin=CAM, seq=1,
                       name="p.jpg", size=len(data), mime="image/jpeg", capture_time=NOW,
                       metadata={}, thumbnail=b"t", where=Where.ABSENT, thumbnail_at=NOW)


class Rig:
    def __init__(self) -> None:
        self.store = MemoryStore(US, 10_000_000)
        self.links: dict[str, Link] = {}
        self.offers: dict[str, set[str]] = {}
        self.readouts = ReadOuts(
            self.store, NodeConfig(name="desk", role=Role.DESK, chunk_size=65536,
                                   readout_retry_s=RETRY),
            self.links, {CAM: "camera one"}, lambda image_id: self.offers.get(image_id, set()))

    def connect(self, peer_id: str) -> Link:
        link = Link(peer_id=peer_id, conn=Connection(US, expected_peer=peer_id),
                    scheduler=Scheduler(), connected_at=NOW, ready=True)
        self.links[peer_id] = link
        return link

    def step(self, image_id: str, what: str, call: Callable[[], list[Effect]]) -> list[Effect]:
        before = self.readouts.state_of(image_id)
        effects = call()
        for effect in effects:
            if isinstance(effect, Expect):
                e = effect.expected
                self.links[effect.peer_id].expected[(e.image_id, e.purpose)] = e
        after = self.readouts.state_of(image_id)
        assert after in TRANSITIONS[(before, what)], (before, what, after)
        return effects

    def read_out(self, image_id: str, wait_s: float | None = None) -> list[Effect]:
        return self.step(image_id, "read-out",
                         lambda: self.readouts.read_out(image_id, NOW, wait_s=wait_s))


def events(effects: list[Effect]) -> list[ev.NodeEvent]:
    return [e.event for e in effects if isinstance(e, Emit)]


def handed_out(effects: list[Effect]) -> bytes:
    return b"".join(e.data for e in events(effects) if isinstance(e, ev.ReadOutChunk))


def test_a_local_original_is_handed_out_in_chunks_and_done_with_its_digest() -> None:
    rig = Rig()
    image_id = rig.store.add_local(DATA, name="p.jpg", now=NOW).image_id
    out = rig.read_out(image_id)
    assert handed_out(out) == DATA
    assert len([e for e in events(out) if isinstance(e, ev.ReadOutChunk)]) == 3
    assert events(out)[-1] == ev.ReadOutDone(image_id, image_id)


def test_an_unknown_picture_fails_at_once_naming_why() -> None:
    rig = Rig()
    out = rig.read_out("0" * 64)
    assert events(out) == [ev.ReadOutFailed("0" * 64, "no picture with that id is known here")]


def test_another_camera_s_picture_is_asked_of_its_owner_then_of_an_offerer() -> None:
    rig = Rig()
    record = theirs()
    rig.store.add_thumbnail(record, NOW)
    rig.connect(OTHER)
    rig.offers[record.image_id] = {OTHER}
    out = rig.read_out(record.image_id)  # the owner is away; the offerer is here
    assert [(e.peer_id, e.message) for e in out if isinstance(e, Send)] == [
        (OTHER, ReadOut(record.image_id, 0))]
    [expect] = [e for e in out if isinstance(e, Expect)]
    assert expect.expected.purpose is Purpose.READOUT and expect.expected.size == len(DATA)
    assert expect.expected.kind is None  # handed out, never written to our card
    assert rig.read_out(record.image_id) == []  # already asked: not twice


def test_a_read_out_whose_owner_is_away_fails_naming_the_owner() -> None:
    rig = Rig()
    record = theirs()
    rig.store.add_thumbnail(record, NOW)
    out = rig.read_out(record.image_id)
    assert events(out) == [ev.ReadOutFailed(
        record.image_id, "its owner camera one is not connected; try again when it is")]


def test_one_of_our_own_dispersed_originals_is_told_to_the_collections() -> None:
    rig = Rig()
    image_id = rig.store.add_local(DATA, name="p.jpg", now=NOW).image_id
    rig.store.set_dispersion(image_id, CAM, DispersalState.STORED, NOW)
    rig.store.free_original(image_id, NOW)
    out = rig.read_out(image_id)
    assert out == [Tell(CollectForReader(image_id))]


def test_a_read_out_that_may_wait_is_pending_retried_when_the_owner_returns_then_done() -> None:
    rig = Rig()
    record = theirs()
    rig.store.add_thumbnail(record, NOW)
    out = rig.read_out(record.image_id, wait_s=60)
    assert Rearm() in out
    assert [type(e) for e in events(out)] == [ev.ReadOutPending]
    assert rig.readouts.state_of(record.image_id) is ReadOutState.PENDING
    assert rig.readouts.next_deadline() == NOW + RETRY
    assert rig.step(record.image_id, "tick", lambda: rig.readouts.tick(NOW + 1)) == []
    link = rig.connect(CAM)
    out = rig.step(record.image_id, "retry", lambda: rig.readouts.link_ready(link, NOW + 2))
    assert [e.message for e in out if isinstance(e, Send)] == [ReadOut(record.image_id, 0)]
    assert rig.readouts.state_of(record.image_id) is ReadOutState.ACTIVE
    assert rig.readouts.next_deadline() is None  # an attempt is under way: nothing to time
    out = rig.step(record.image_id, "done",
                   lambda: rig.readouts.done(record.image_id, record.image_id))
    assert events(out) == [ev.ReadOutDone(record.image_id, record.image_id)]


def test_a_waiting_read_out_is_retried_on_its_timer_and_given_up_at_its_deadline() -> None:
    rig = Rig()
    record = theirs()
    rig.store.add_thumbnail(record, NOW)
    rig.read_out(record.image_id, wait_s=8)
    out = rig.step(record.image_id, "tick", lambda: rig.readouts.tick(NOW + RETRY))
    assert [type(e) for e in events(out)] == [ev.ReadOutPending]  # tried again, still away
    assert rig.readouts.next_deadline() == NOW + 8  # its deadline comes before the next retry
    out = rig.step(record.image_id, "tick", lambda: rig.readouts.tick(NOW + 8))
    [failed] = events(out)
    assert isinstance(failed, ev.ReadOutFailed) and failed.reason.endswith(
        "(gave up waiting for it)")
    assert rig.readouts.state_of(record.image_id) is ReadOutState.NONE


def test_a_failure_of_a_read_out_that_may_not_wait_is_final() -> None:
    rig = Rig()
    out = rig.step("1" * 64, "failed", lambda: rig.readouts.failed("1" * 64, "it went away"))
    assert events(out) == [ev.ReadOutFailed("1" * 64, "it went away")]


def test_an_original_held_as_it_is_is_handed_out_from_what_we_hold() -> None:
    rig = Rig()
    image_id = hashlib.sha256(DATA).hexdigest()
    rig.store.reserve(image_id, len(DATA))
    rig.store.write_partial(image_id, Incoming.HELD, 0, DATA)
    rig.store.finish_partial(image_id, Incoming.HELD,
                             image_id, NOW, owner=CAM)
    out = rig.read_out(image_id)
    assert handed_out(out) == DATA and events(out)[-1] == ev.ReadOutDone(image_id, image_id)


def test_a_collection_for_our_user_ends_the_read_out_relayed_or_from_the_card() -> None:
    rig = Rig()
    image_id = rig.store.add_local(DATA, name="p.jpg", now=NOW).image_id
    assert events(rig.readouts.served(image_id, home=False)) == [
        ev.ReadOutDone(image_id, image_id)]
    out = rig.readouts.served(image_id, home=True)
    assert handed_out(out) == DATA and events(out)[-1] == ev.ReadOutDone(image_id, image_id)
