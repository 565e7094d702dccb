"""protocol/collections.py alone, without a Node: collecting our dispersed originals, as effects.

A camera's MemoryStore disperses one picture by hand (its sealed bytes kept for the
holders to send back), links to the holders and readers are made by hand, and each
input's state change is checked against the machine's own table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from protocol import events as ev
from protocol.collections import TRANSITIONS, Collections, CollectState
from protocol.config import NodeConfig
from protocol.connection import Connection
from protocol.effects import (
    CollectedBytes,
    CollectionIn,
    Drop,
    Effect,
    Emit,
    Expect,
    QueueOriginal,
    ReadOutLost,
    ReadOutServed,
    Send,
    ServeFromCard,
    Tell,
    Wake,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import Collect, Purpose, Release, Role, TransferFailed
from protocol.peer import Link
from protocol.scheduler import Scheduler, Transfer
from protocol.sealing import SEALED_RECORD
from protocol.store import Decision, DispersalState, Incoming, Where
from sim.memstore import MemoryStore

US = hashlib.sha256(b"camera").hexdigest()
H1 = hashlib.sha256(b"holder one").hexdigest()
H2 = hashlib.sha256(b"holder two").hexdigest()
DESK = hashlib.sha256(b"desk").hexdigest()
NOW = 1_700_000_000.0
DATA = bytes(range(256)) * 600  # 153,600 bytes, several sealed records


class Rig:
    """Our camera with one picture dispersed to ``holders``; its sealed bytes in ``sealed``."""

    def __init__(self, holders: tuple[str, ...] = (H1,), capacity: int = 10_000_000) -> None:
        self.store = MemoryStore(US, capacity)
        self.image_id = self.store.add_local(DATA, name="p.jpg", now=NOW).image_id
        self.form = self.store.sealed_form(self.image_id)
        self.sealed = self.store.read_sealed(self.image_id, 0, self.form.size)
        for holder in holders:
            self.store.set_dispersion(self.image_id, holder, DispersalState.STORED, NOW)
        self.store.free_original(self.image_id, NOW)
        self.links: dict[str, Link] = {}
        self.collections = Collections(self.store, NodeConfig(name="cam", role=Role.CAMERA),
                                       self.links, {H1: "holder one", H2: "holder two"})

    def connect(self, peer_id: str) -> Link:
        link = Link(peer_id=peer_id, conn=Connection(US, expected_peer=peer_id),
                    scheduler=Scheduler(), connected_at=NOW, ready=True)
        self.links[peer_id] = link
        return link

    def step(self, what: str, call: Callable[[], list[Effect]]) -> list[Effect]:
        before = self.collections.state_of(self.image_id)
        effects = call()
        for effect in effects:  # the link writes the later steps read, as Node.apply does
            if isinstance(effect, QueueOriginal):
                self.links[effect.peer_id].scheduler.add_transfer(effect.transfer)
        after = self.collections.state_of(self.image_id)
        assert after in TRANSITIONS[(before, what)], (before, what, after)
        return effects

    def relay(self, reader: str, purpose: Purpose = Purpose.READOUT, offset: int = 0
              ) -> list[Effect]:
        record = self.store.image(self.image_id)
        assert record is not None
        return self.step("reader", lambda: self.collections.relay(
            self.links[reader], record, purpose, offset, NOW))

    def bytes_from(self, holder: str, data: bytes) -> list[Effect]:
        return self.step("bytes", lambda: self.collections.stream_chunk(
            CollectedBytes(holder, self.image_id, data)))

    def complete(self, holder: str, offset: int = 0) -> list[Effect]:
        return self.step("complete", lambda: self.collections.stream_complete(
            CollectionIn(holder, self.image_id, offset, NOW)))


def sends(effects: list[Effect]) -> list[tuple[str, object]]:
    return [(e.peer_id, e.message) for e in effects if isinstance(e, Send)]


def events(effects: list[Effect]) -> list[ev.NodeEvent]:
    return [e.event for e in effects if isinstance(e, Emit)]


def relayed(effects: list[Effect]) -> Transfer:
    [queued] = [e for e in effects if isinstance(e, QueueOriginal)]
    return queued.transfer


def test_collect_asks_the_connected_holder_for_the_sealed_form_and_is_durable() -> None:
    rig = Rig()
    rig.connect(H1)
    out = rig.step("collect", lambda: rig.collections.collect([rig.image_id], NOW))
    assert sends(out) == [(H1, Collect(rig.image_id, 0))]
    [expect] = [e for e in out if isinstance(e, Expect)]
    assert expect.expected.kind is Incoming.SEALED
    assert (expect.expected.size, expect.expected.digest) == (rig.form.size, rig.form.digest)
    assert rig.collections.state_of(rig.image_id) is CollectState.HOME
    decision = rig.store.decision(rig.image_id)
    assert decision is not None and decision.decision is Decision.REQUESTED


def test_collect_with_its_holder_away_is_pending_and_goes_when_the_holder_is_back() -> None:
    rig = Rig()
    out = rig.step("collect", lambda: rig.collections.collect([rig.image_id], NOW))
    [pending] = events(out)
    assert isinstance(pending, ev.CollectPending) and "holder one" in pending.reason
    link = rig.connect(H1)
    out = rig.step("holder-back", lambda: rig.collections.link_ready(link, NOW))
    assert sends(out) == [(H1, Collect(rig.image_id, 0))]


def test_collect_refuses_what_is_not_ours_or_would_pass_the_mark() -> None:
    rig = Rig(capacity=len(DATA))  # no room below the high-water mark for it
    out = rig.collections.collect([rig.image_id, "2" * 64], NOW)
    assert [type(e) for e in events(out)] == [ev.CollectFailed, ev.CollectFailed]
    assert "no room" in events(out)[0].reason  # type: ignore[attr-defined]
    assert rig.collections.state_of(rig.image_id) is CollectState.NONE


def test_a_reader_gets_the_plaintext_record_by_record_and_the_completion_once_verified() -> None:
    rig = Rig()
    rig.connect(H1)
    rig.connect(DESK)
    out = rig.relay(DESK)
    assert sends(out) == [(H1, Collect(rig.image_id, 0))]
    transfer = relayed(out)
    assert (transfer.size, transfer.digest, transfer.may_complete) == (
        len(DATA), rig.image_id, False)
    out = rig.bytes_from(H1, rig.sealed[: SEALED_RECORD + 10])  # one whole record and a bit
    assert Wake(DESK) in out
    assert transfer.available == len(transfer.payload or b"") > 0
    assert bytes(transfer.payload or b"") == DATA[: transfer.available]
    rig.bytes_from(H1, rig.sealed[SEALED_RECORD + 10 :])
    assert not transfer.may_complete  # every byte is here, the last record not yet opened
    out = rig.complete(H1)
    assert transfer.may_complete and transfer.available == transfer.size
    assert bytes(transfer.payload or b"") == DATA and Wake(DESK) in out
    assert rig.collections.state_of(rig.image_id) is CollectState.NONE


def test_a_repair_gets_the_holder_s_sealed_bytes_as_they_are() -> None:
    rig = Rig()
    rig.connect(H1)
    rig.connect(H2)
    transfer = relayed(rig.relay(H2, Purpose.DISPERSE))
    assert (transfer.size, transfer.digest) == (rig.form.size, rig.form.digest)
    rig.bytes_from(H1, rig.sealed)
    rig.complete(H1)
    assert bytes(transfer.payload or b"") == rig.sealed


def test_our_user_reading_out_a_relay_under_way_gets_what_came_so_far_then_the_rest() -> None:
    rig = Rig()
    rig.connect(H1)
    rig.connect(DESK)
    rig.relay(DESK)
    rig.bytes_from(H1, rig.sealed[: 2 * SEALED_RECORD])
    out = rig.collections.read_for_user(rig.image_id)
    [first] = events(out)
    assert isinstance(first, ev.ReadOutChunk) and first.offset == 0
    out = rig.bytes_from(H1, rig.sealed[2 * SEALED_RECORD :]) + rig.complete(H1)
    rest = b"".join(e.data for e in events(out) if isinstance(e, ev.ReadOutChunk))
    assert first.data + rest == DATA
    assert Tell(ReadOutServed(rig.image_id, home=False)) in out


def test_a_holder_that_changed_the_bytes_is_cut_off_and_the_next_holder_asked_from_there(
) -> None:
    rig = Rig(holders=(H1, H2))
    rig.connect(H1)
    rig.connect(H2)
    rig.connect(DESK)
    out = rig.relay(DESK)
    [(first, _)] = sends(out)
    other = H2 if first == H1 else H1
    rig.bytes_from(first, rig.sealed[:SEALED_RECORD])  # one good record
    changed = bytes(b ^ 1 for b in rig.sealed[SEALED_RECORD : 2 * SEALED_RECORD])
    with pytest.raises(RemoteProtocolError) as raised:
        rig.collections.stream_chunk(CollectedBytes(first, rig.image_id, changed))
    assert raised.value.code == "hash-mismatch"
    del rig.links[first]  # the node cuts the liar off
    out = rig.step("lost", lambda: rig.collections.link_gone(first, "it lied"))
    assert sends(out) == [(other, Collect(rig.image_id, SEALED_RECORD))]
    rig.bytes_from(other, rig.sealed[SEALED_RECORD:])
    rig.complete(other, offset=SEALED_RECORD)
    transfer = rig.links[DESK].scheduler.transfer(rig.image_id, Purpose.READOUT)
    assert transfer is not None and bytes(transfer.payload or b"") == DATA


def test_when_no_holder_is_left_every_reader_hears_why() -> None:
    rig = Rig()
    rig.connect(H1)
    rig.connect(DESK)
    new_holder = hashlib.sha256(b"new holder").hexdigest()
    rig.connect(new_holder)
    rig.relay(DESK)
    rig.relay(new_holder, Purpose.DISPERSE)
    rig.collections.read_for_user(rig.image_id)
    out = rig.step("lost", lambda: rig.collections.collect_failed(rig.image_id, "disk error"))
    why = "collecting from holder one failed: disk error"
    assert (DESK, TransferFailed(rig.image_id, Purpose.READOUT, why)) in sends(out)
    assert (new_holder, Release(rig.image_id)) in sends(out)  # a repair copy: its room freed
    assert Drop(new_holder, rig.image_id, Purpose.DISPERSE) in out
    assert Tell(ReadOutLost(rig.image_id, why)) in out


def test_home_for_good_releases_the_holders_and_serves_the_readers_that_waited() -> None:
    rig = Rig()
    rig.connect(H1)
    rig.connect(DESK)
    rig.step("collect", lambda: rig.collections.collect([rig.image_id], NOW))
    out = rig.relay(DESK, offset=7)
    assert out == []  # it waits for the original to be home
    rig.store.write_partial(rig.image_id, Incoming.SEALED, 0, rig.sealed)
    rig.store.finish_partial(rig.image_id, Incoming.SEALED, rig.form.digest, NOW)
    out = rig.complete(H1)
    assert events(out) == [ev.Collected(rig.image_id, H1)]
    assert sends(out) == [(H1, Release(rig.image_id))]
    assert Tell(ServeFromCard(DESK, rig.image_id, Purpose.READOUT, 7)) in out
    assert [e.state for e in rig.store.dispersion(rig.image_id)] == [DispersalState.COLLECTING]
    assert rig.store.decision(rig.image_id) is None
    record = rig.store.image(rig.image_id)
    assert record is not None and record.where is Where.LOCAL


def test_a_relay_past_the_end_cuts_the_reader_off() -> None:
    rig = Rig()
    rig.connect(H1)
    rig.connect(DESK)
    with pytest.raises(RemoteProtocolError) as raised:
        rig.relay(DESK, offset=len(DATA) + 1)
    assert raised.value.code == "bad-offset"


def test_a_reader_with_no_holder_connected_is_refused_naming_the_holder() -> None:
    rig = Rig()
    rig.connect(DESK)
    out = rig.relay(DESK)
    [(peer, failed)] = sends(out)
    assert peer == DESK and isinstance(failed, TransferFailed)
    assert "holder one, not connected now" in failed.reason
