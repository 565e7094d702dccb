"""protocol/pulls.py alone, without a Node: requests, refusals and background pulls as effects.

The machine is built from a MemoryStore, a NodeConfig and a dict of links made by
hand; the test applies the effects it returns to those links the way the node does,
and checks every state a picture passes through against the machine's own table.
"""

from __future__ import annotations

import hashlib

from protocol import events as ev
from protocol.config import NodeConfig, Policy
from protocol.connection import Connection
from protocol.effects import Cancel, Effect, Emit, Expect, Hurry, Send
from protocol.messages import Purpose, RefuseOriginal, RequestOriginal, Role
from protocol.peer import Link
from protocol.pulls import TRANSITIONS, Pulls, PullState
from protocol.scheduler import Scheduler
from protocol.store import Decision, ImageRecord, Where
from sim.memstore import MemoryStore

US = hashlib.sha256(b"desk").hexdigest()
CAM = hashlib.sha256(b"camera").hexdigest()
OTHER = hashlib.sha256(b"other camera").hexdigest()
NOW = 1_700_000_000.0


def picture(n: int, size: int = 100_000, origin: str = CAM) -> ImageRecord:
    return ImageRecord(
        image_id=hashlib.sha256(f"picture {n}".encode()).hexdigest(),
        origin=origin,
        seq=n + 1,
        name=f"p{n}.jpg",
        size=size,
        mime="image/jpeg",
        capture_time=NOW + n,
        metadata={},
        thumbnail=b"t",
        where=Where.ABSENT,
        thumbnail_at=NOW,
    )


def link(peer_id: str) -> Link:
    return Link(
        peer_id=peer_id,
        conn=Connection(US, expected_peer=peer_id),
        scheduler=Scheduler(),
        connected_at=NOW,
        last_heard=NOW,
        ready=True,
    )


class Rig:
    """A Pulls machine, its card and links, and every effect it returned, applied."""

    def __init__(self, *, capacity: int = 10_000_000, policy: Policy = Policy.ALL, most: int = 4):
        self.store = MemoryStore(US, capacity)
        config = NodeConfig(name="desk", role=Role.DESK, default_policy=policy,
                            max_outstanding_requests=most)
        self.links: dict[str, Link] = {}
        self.pulls = Pulls(self.store, config, self.links)
        self.effects: list[Effect] = []

    def connect(self, peer_id: str) -> None:
        self.links[peer_id] = link(peer_id)
        self.pulls.link_ready(self.links[peer_id])

    def apply(self, effects: list[Effect]) -> list[Effect]:
        for effect in effects:
            if isinstance(effect, Expect):
                e = effect.expected
                self.links[effect.peer_id].expected[(e.image_id, e.purpose)] = e
            elif isinstance(effect, Cancel):
                del self.links[effect.peer_id].expected[(effect.image_id, effect.purpose)]
            elif isinstance(effect, Hurry):
                self.links[effect.peer_id].expected[(effect.image_id, effect.purpose)].urgent = True
        self.effects += effects
        return effects

    def thumbnail(self, record: ImageRecord, *, offered_by: str | None = None) -> list[Effect]:
        self.store.add_thumbnail(record, NOW)
        if offered_by is not None:
            self.pulls.offered(offered_by, record.image_id)
        return self.step(record.image_id, "thumbnail",
                         lambda: self.pulls.thumbnail_seen(record.image_id, NOW))

    def step(self, image_id: str, what: str, call: object) -> list[Effect]:
        """Run one input and check the state it leaves against the table."""
        before = self.pulls.state_of(image_id)
        assert callable(call)
        out = self.apply(call())
        after = self.pulls.state_of(image_id)
        allowed = TRANSITIONS.get((before, what))
        assert allowed is not None and after in allowed, (before, what, after)
        return out


def sends(effects: list[Effect]) -> list[tuple[str, object]]:
    return [(e.peer_id, e.message) for e in effects if isinstance(e, Send)]


def test_a_thumbnail_with_policy_all_pulls_its_original_from_its_offerer_in_the_background() -> None:
    rig = Rig()
    rig.connect(CAM)
    p = picture(0)
    out = rig.thumbnail(p, offered_by=CAM)
    assert sends(out) == [(CAM, RequestOriginal(p.image_id, False, 0))]
    assert rig.pulls.state_of(p.image_id) is PullState.ASKED
    assert not any(isinstance(e, Emit) for e in out)  # background pulls tell the user nothing


def test_policy_thumbnails_pulls_nothing() -> None:
    rig = Rig(policy=Policy.THUMBNAILS)
    rig.connect(CAM)
    out = rig.thumbnail(picture(0), offered_by=CAM)
    assert out == []


def test_the_users_request_waits_for_a_source_then_goes_urgent_to_the_origin() -> None:
    rig = Rig(policy=Policy.THUMBNAILS)
    p = picture(0)
    rig.store.add_thumbnail(p, NOW)
    out = rig.step(p.image_id, "request",
                   lambda: rig.pulls.request(p.image_id, NOW, max_side=None, quality=None))
    assert [e.event for e in out if isinstance(e, Emit)] == [
        ev.Decided(p.image_id, Decision.REQUESTED),
        ev.RequestPending(p.image_id, "no connected peer has this original yet"),
    ]
    assert rig.pulls.state_of(p.image_id) is PullState.WANTED
    rig.links[CAM] = link(CAM)
    out = rig.step(p.image_id, "pump", lambda: rig.pulls.pump(NOW))
    assert sends(out) == [(CAM, RequestOriginal(p.image_id, True, 0))]


def test_a_request_for_a_background_pull_in_flight_hurries_it_instead_of_asking_twice() -> None:
    rig = Rig()
    rig.connect(CAM)
    p = picture(0)
    rig.thumbnail(p, offered_by=CAM)
    out = rig.step(p.image_id, "request",
                   lambda: rig.pulls.request(p.image_id, NOW, max_side=None, quality=None))
    assert Hurry(CAM, p.image_id, Purpose.SYNC) in out
    assert sends(out) == [(CAM, RequestOriginal(p.image_id, True, 0))]
    assert rig.links[CAM].expected[(p.image_id, Purpose.SYNC)].urgent


def test_a_refusal_cancels_what_was_asked_and_tells_the_offerer() -> None:
    rig = Rig()
    rig.connect(CAM)
    p = picture(0)
    rig.thumbnail(p, offered_by=CAM)
    out = rig.step(p.image_id, "refuse", lambda: rig.pulls.refuse(p.image_id, NOW))
    assert Cancel(CAM, p.image_id, Purpose.SYNC) in out
    assert sends(out) == [(CAM, RefuseOriginal(p.image_id))]
    decision = rig.store.decision(p.image_id)
    assert decision is not None and decision.decision is Decision.REFUSED
    # Refused: a later thumbnail of it (another offerer) pulls nothing.
    rig.connect(OTHER)
    assert rig.thumbnail(p, offered_by=OTHER) == []


def test_background_pulls_stop_below_the_high_water_mark() -> None:
    rig = Rig(capacity=250_000)  # mark at 225 000: two 100 kB pulls fit, the third does not
    rig.connect(CAM)
    asked = []
    for n in range(3):
        asked += sends(rig.thumbnail(picture(n), offered_by=CAM))
    assert len(asked) == 2
    assert rig.pulls.state_of(picture(2).image_id) is PullState.QUEUED


def test_each_peer_serves_at_most_max_outstanding_background_pulls() -> None:
    rig = Rig(most=2)
    rig.connect(CAM)
    for n in range(3):
        rig.thumbnail(picture(n), offered_by=CAM)
    assert len(sends(rig.effects)) == 2
    # One arrives: its slot frees and the third goes out on the next pump.
    first = picture(0).image_id
    del rig.links[CAM].expected[(first, Purpose.SYNC)]
    rig.pulls.finished(CAM, first)
    assert sends(rig.pulls.pump(NOW)) == [(CAM, RequestOriginal(picture(2).image_id, False, 0))]


def test_a_lost_link_puts_background_pulls_back_in_the_queue_and_requests_back_to_wanted() -> None:
    rig = Rig()
    rig.connect(CAM)
    p, q = picture(0), picture(1)
    rig.thumbnail(p, offered_by=CAM)
    rig.thumbnail(q, offered_by=CAM)
    rig.apply(rig.pulls.request(q.image_id, NOW, max_side=None, quality=None))
    gone = rig.links.pop(CAM)
    for (image_id, _), expected in gone.expected.items():
        rig.pulls.stream_lost(image_id, expected)
    rig.pulls.link_gone(CAM)
    assert rig.pulls.state_of(p.image_id) is PullState.QUEUED
    assert rig.pulls.state_of(q.image_id) is PullState.WANTED
    rig.connect(CAM)
    out = rig.apply(rig.pulls.pump(NOW))
    assert sends(out) == [(CAM, RequestOriginal(q.image_id, True, 0)),
                          (CAM, RequestOriginal(p.image_id, False, 0))]


def test_a_source_that_failed_a_background_pull_is_skipped_until_it_reconnects() -> None:
    rig = Rig()
    rig.connect(CAM)
    p = picture(0)
    rig.thumbnail(p, offered_by=CAM)
    expected = rig.links[CAM].expected.pop((p.image_id, Purpose.SYNC))
    rig.pulls.failed(CAM, p.image_id, expected)
    assert rig.pulls.state_of(p.image_id) is PullState.QUEUED
    assert rig.pulls.pump(NOW) == []
    rig.connect(CAM)  # its catalog again: it may serve it now
    assert sends(rig.apply(rig.pulls.pump(NOW))) == [(CAM, RequestOriginal(p.image_id, False, 0))]
