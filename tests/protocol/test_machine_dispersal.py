"""protocol/dispersal.py alone, without a Node: the owner's side of dispersal, as effects.

The machine is built from a MemoryStore, a NodeConfig and a dict of links made by
hand (their advertised room set as a Hello would); the test checks the effects each
input returns and every state a dispersion-list entry passes through against the
machine's own table.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from protocol import events as ev
from protocol.config import NodeConfig, Policy
from protocol.connection import Connection
from protocol.dispersal import NONE, TRANSITIONS, Dispersal
from protocol.effects import (
    Effect,
    Emit,
    QueueOriginal,
    Rearm,
    Relay,
    Send,
    Tell,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    PROTOCOL_VERSION,
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Hello,
    Purpose,
    Release,
    Role,
    Stored,
)
from protocol.peer import Link, holder_rank
from protocol.scheduler import Lane, Scheduler, Source
from protocol.sealing import sealed_size
from protocol.store import DispersalState, ImageRecord, Where
from sim.memstore import MemoryStore

US = hashlib.sha256(b"camera").hexdigest()
H1, H2, H3 = (hashlib.sha256(f"holder {n}".encode()).hexdigest() for n in (1, 2, 3))
NOW = 1_700_000_000.0
SIZE = 150_000


def link(peer_id: str, free: int = 10_000_000) -> Link:
    made = Link(
        peer_id=peer_id,
        conn=Connection(US, expected_peer=peer_id),
        scheduler=Scheduler(),
        connected_at=NOW,
        ready=True,
    )
    made.free = free  # what its Hello advertised
    return made


class Rig:
    """A Dispersal machine on a 1 MB card (mark at half), its links and its pictures."""

    def __init__(self, *holders: str, replicas: int = 1, free: int = 10_000_000) -> None:
        self.store = MemoryStore(US, 1_000_000)
        config = NodeConfig(name="cam", role=Role.CAMERA, high_water=0.5, replicas=replicas,
                            default_policy=Policy.THUMBNAILS, retry_s=30.0)
        self.links: dict[str, Link] = {h: link(h, free) for h in holders}
        self.dispersal = Dispersal(self.store, config, self.links)
        self.pictures: list[ImageRecord] = []

    def capture(self, n: int) -> list[ImageRecord]:
        """``n`` pictures of SIZE, oldest first, each a candidate."""
        for _ in range(n):
            i = len(self.pictures)
            data = random.Random(i).randbytes(SIZE)
            record = self.store.add_local(data, name=f"p{i}.jpg", now=NOW, capture_time=NOW + i)
            self.dispersal.note_local(record)
            self.pictures.append(record)
        return self.pictures

    def step(self, image_id: str, holder: str, what: str, call: object) -> list[Effect]:
        """Run one input and check the entry's state it leaves against the table."""
        before = self.dispersal.state_of(image_id, holder)
        assert callable(call)
        out = call()
        assert isinstance(out, list) or out is None
        after = self.dispersal.state_of(image_id, holder)
        allowed = TRANSITIONS.get((before, what))
        assert allowed is not None and after in allowed, (before, what, after)
        return out or []

    def accept(self, image_id: str, holder: str, *, reservation: int | None = None) -> list[Effect]:
        msg = DisperseAccept(image_id, reservation or sealed_size(SIZE), 0)
        return self.step(image_id, holder, "accept",
                         lambda: self.dispersal.on_accept(holder, msg, NOW))

    def stored(self, image_id: str, holder: str) -> list[Effect]:
        msg = Stored(image_id, self.store.sealed_form(image_id).digest)
        return self.step(image_id, holder, "stored",
                         lambda: self.dispersal.on_stored(holder, msg, NOW))

    def dispersed(self, image_id: str, *holders: str) -> None:
        """Make ``image_id`` DISPERSED, STORED by ``holders`` (as an earlier run left it)."""
        self.store.sealed_form(image_id)  # sealed (its key kept) when it first went out
        for holder in holders:
            self.store.set_dispersion(image_id, holder, DispersalState.STORED, NOW)
        self.store.free_original(image_id, NOW)


def sends(effects: list[Effect]) -> list[tuple[str, object]]:
    return [(e.peer_id, e.message) for e in effects if isinstance(e, Send)]


def events(effects: list[Effect]) -> list[object]:
    return [e.event for e in effects if isinstance(e, Emit)]


def ask_of(record: ImageRecord) -> DisperseRequest:
    return DisperseRequest(record.image_id, sealed_size(record.size), US)


def test_below_the_mark_nothing_is_asked_above_it_the_oldest_goes_first() -> None:
    rig = Rig(H1)
    rig.capture(3)  # 450 000 of a 500 000 mark
    assert rig.dispersal.maybe_disperse(NOW) == []
    oldest = rig.capture(1)[0]  # 600 000: 100 000 over
    out = rig.step(oldest.image_id, H1, "ask", lambda: rig.dispersal.maybe_disperse(NOW))
    assert sends(out) == [(H1, ask_of(oldest))]  # one covers the excess
    assert rig.dispersal.state_of(oldest.image_id, H1) is DispersalState.REQUESTED
    assert rig.dispersal.room_of(H1) == 10_000_000 - sealed_size(SIZE)


def test_an_accept_streams_the_sealed_original_behind_its_thumbnail() -> None:
    rig = Rig(H1)
    oldest = rig.capture(4)[0]
    rig.dispersal.maybe_disperse(NOW)
    out = rig.accept(oldest.image_id, H1)
    form = rig.store.sealed_form(oldest.image_id)
    assert events(out) == [ev.DispersalAccepted(oldest.image_id, H1, sealed_size(SIZE))]
    [queue] = [e for e in out if isinstance(e, QueueOriginal)]
    assert queue.record == oldest  # its thumbnail goes first (protocol/link_effects.py)
    transfer = queue.transfer
    assert (transfer.purpose, transfer.lane, transfer.source) == (
        Purpose.DISPERSE, Lane.DISPERSAL, Source.SEALED)
    assert (transfer.size, transfer.digest, transfer.destination, transfer.owner) == (
        form.size, form.digest, H1, US)


def test_an_accept_reserving_too_little_is_a_protocol_error() -> None:
    rig = Rig(H1)
    oldest = rig.capture(4)[0]
    rig.dispersal.maybe_disperse(NOW)
    with pytest.raises(RemoteProtocolError) as caught:
        rig.dispersal.on_accept(H1, DisperseAccept(oldest.image_id, SIZE - 1, 0), NOW)
    assert caught.value.code == "bad-accept"
    assert rig.dispersal.state_of(oldest.image_id, H1) is DispersalState.REQUESTED


def test_stored_frees_the_original_only_with_our_digest_and_our_stream_done() -> None:
    rig = Rig(H1)
    oldest = rig.capture(4)[0]
    rig.dispersal.maybe_disperse(NOW)
    out = rig.accept(oldest.image_id, H1)
    [queue] = [e for e in out if isinstance(e, QueueOriginal)]
    rig.links[H1].scheduler.add_transfer(queue.transfer)
    digest = rig.store.sealed_form(oldest.image_id).digest
    with pytest.raises(RemoteProtocolError) as early:
        rig.dispersal.on_stored(H1, Stored(oldest.image_id, digest), NOW)
    assert early.value.code == "premature-stored"
    rig.links[H1].scheduler.drop(oldest.image_id, Purpose.DISPERSE)  # all of it went
    with pytest.raises(RemoteProtocolError) as wrong:
        rig.dispersal.on_stored(H1, Stored(oldest.image_id, "0" * 64), NOW)
    assert wrong.value.code == "bad-digest"
    assert rig.store.image(oldest.image_id).where is Where.LOCAL  # type: ignore[union-attr]
    out = rig.stored(oldest.image_id, H1)
    assert events(out) == [ev.Dispersed(oldest.image_id, (H1,))]
    assert rig.store.image(oldest.image_id).where is Where.DISPERSED  # type: ignore[union-attr]


def test_two_replicas_free_only_once_both_holders_stored() -> None:
    rig = Rig(H1, H2, replicas=2)
    oldest = rig.capture(4)[0]
    out = rig.dispersal.maybe_disperse(NOW)
    assert sorted(peer for peer, _ in sends(out)) == sorted([H1, H2])
    for holder in (H1, H2):
        rig.accept(oldest.image_id, holder)
    assert events(rig.stored(oldest.image_id, H1)) == []
    assert rig.store.image(oldest.image_id).where is Where.LOCAL  # type: ignore[union-attr]
    assert events(rig.stored(oldest.image_id, H2))[0] == ev.Dispersed(oldest.image_id, (H1, H2))


def test_a_reject_skips_that_holder_for_retry_s_and_asks_the_next() -> None:
    rig = Rig(H1, H2)
    oldest = rig.capture(4)[0]
    [(first, _)] = sends(rig.dispersal.maybe_disperse(NOW))
    second = H2 if first == H1 else H1
    reject = DisperseReject(oldest.image_id, "full", 1234)
    out = rig.step(oldest.image_id, first, "reject",
                   lambda: rig.dispersal.on_reject(first, reject, NOW))
    assert Rearm() in out
    assert events(out)[0] == ev.DispersalRejected(oldest.image_id, first, "full")
    assert sends(out) == [(second, ask_of(oldest))]
    assert rig.dispersal.room_of(first) == 1234
    assert rig.dispersal.next_retry() == NOW + 30.0


def test_answers_no_entry_names_are_answered_with_a_release_and_a_replay_with_nothing() -> None:
    rig = Rig(H1)
    oldest = rig.capture(4)[0]
    assert sends(rig.accept(oldest.image_id, H1)) == [(H1, Release(oldest.image_id))]
    rig.store.sealed_form(oldest.image_id)
    assert sends(rig.stored(oldest.image_id, H1)) == [(H1, Release(oldest.image_id))]
    rig.dispersal.maybe_disperse(NOW)
    rig.accept(oldest.image_id, H1)
    rig.stored(oldest.image_id, H1)
    assert rig.accept(oldest.image_id, H1) == []  # a replay: Release would drop the only copy


def test_a_holder_back_is_asked_again_for_what_it_had_not_stored() -> None:
    rig = Rig(H1)
    oldest = rig.capture(4)[0]
    rig.dispersal.maybe_disperse(NOW)
    rig.dispersal.link_gone(H1)
    rig.links[H1] = link(H1)
    out = rig.step(oldest.image_id, H1, "link-back", lambda: rig.dispersal.link_ready(H1, NOW))
    assert sends(out) == [(H1, ask_of(oldest))]  # asked once: the look sees the entry


def test_our_release_leaving_drops_an_entry_not_yet_stored_and_keeps_a_stored_one() -> None:
    rig = Rig(H1, H2, replicas=2)
    oldest = rig.capture(4)[0]
    rig.dispersal.maybe_disperse(NOW)
    rig.accept(oldest.image_id, H1)
    rig.stored(oldest.image_id, H1)
    for holder in (H1, H2):
        rig.step(oldest.image_id, holder, "release-sent",
                 lambda h=holder: rig.dispersal.release_sent(h, oldest.image_id))
    assert rig.dispersal.state_of(oldest.image_id, H1) is DispersalState.STORED
    assert rig.dispersal.state_of(oldest.image_id, H2) == NONE


def test_a_lost_holder_is_replaced_by_a_relay_from_the_other_copy() -> None:
    rig = Rig(H2, H3, replicas=2)
    image_id = rig.capture(1)[0].image_id
    rig.dispersed(image_id, H1, H2)
    out = rig.step(image_id, H1, "holder-lost", lambda: rig.dispersal.repair(H1, "h1", NOW))
    assert sends(out) == [(H3, ask_of(rig.pictures[0]))]
    out = rig.accept(image_id, H3)
    assert Tell(Relay(H3, image_id, Purpose.DISPERSE, 0, NOW)) in out
    assert not any(isinstance(e, QueueOriginal) for e in out)  # our card has no copy to send
    digest = rig.store.sealed_form(image_id).digest
    out = rig.dispersal.on_stored(H3, Stored(image_id, digest), NOW)
    assert events(out) == [ev.Repaired(image_id, H3)]


def test_a_lost_holder_of_the_only_copy_stays_listed_and_says_so() -> None:
    rig = Rig(H2)
    image_id = rig.capture(1)[0].image_id
    rig.dispersed(image_id, H1)
    out = rig.step(image_id, H1, "holder-lost", lambda: rig.dispersal.repair(H1, "h1", NOW))
    [failed] = events(out)
    assert isinstance(failed, ev.RepairFailed) and "h1 was the only holder" in failed.reason
    assert rig.dispersal.state_of(image_id, H1) is DispersalState.STORED
    assert sends(out) == []


def test_the_rule_of_the_look_a_look_that_asked_nobody_waits_for_news() -> None:
    rig = Rig(H1, free=0)  # a holder with no room
    rig.capture(4)
    out = rig.dispersal.maybe_disperse(NOW)
    assert sends(out) == [] and isinstance(events(out)[0], ev.CardFull)
    rig.links[H1] = link(H1)  # room appears, but nothing told the machine
    assert rig.dispersal.maybe_disperse(NOW) == []
    # Any input is news: the next look runs in full and asks.
    rig.dispersal.link_gone(H2)
    assert sends(rig.dispersal.maybe_disperse(NOW)) == [(H1, ask_of(rig.pictures[0]))]


def test_holders_are_desks_first_then_a_stable_order_per_picture() -> None:
    rig = Rig(H1, H2, H3, replicas=2)
    rig.links[H3].hello = Hello(H3, "desk", Role.DESK, PROTOCOL_VERSION, (), 10**9, 10**9)
    oldest = rig.capture(4)[0]
    asked = [peer for peer, _ in sends(rig.dispersal.maybe_disperse(NOW))]
    cameras = sorted((H1, H2), key=lambda h: holder_rank(oldest.image_id, h))
    assert asked == [H3, cameras[0]]
