"""protocol/holding.py alone, without a Node: the holder's answers to dispersal, as effects.

The machine is built from a MemoryStore, a NodeConfig and a dict of links made by
hand; the test applies the effects it returns to those links the way the node does,
and checks every state a picture passes through against the machine's own table.
"""

from __future__ import annotations

import hashlib

import pytest

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.connection import Connection
from protocol.effects import Cancel, Effect, Emit, Expect, Send
from protocol.errors import RemoteProtocolError
from protocol.holding import TRANSITIONS, Holding, HoldState
from protocol.messages import (
    DisperseAccept,
    DisperseReject,
    DisperseRequest,
    Purpose,
    Release,
    Role,
    Stored,
)
from protocol.peer import Link
from protocol.scheduler import Scheduler
from protocol.store import Incoming
from sim.memstore import MemoryStore
from sim.planted import AcceptPastCapacity

US = hashlib.sha256(b"desk").hexdigest()
CAM = hashlib.sha256(b"camera").hexdigest()
OTHER = hashlib.sha256(b"other camera").hexdigest()
NOW = 1_700_000_000.0
DATA = bytes(range(256)) * 100  # a sealed original of 25 600 bytes
IMAGE = hashlib.sha256(b"picture").hexdigest()


def link(peer_id: str) -> Link:
    return Link(
        peer_id=peer_id,
        conn=Connection(US, expected_peer=peer_id),
        scheduler=Scheduler(),
        connected_at=NOW,
        ready=True,
    )


class Rig:
    """A Holding machine, its card and links, and every effect it returned, applied."""

    def __init__(self, *, capacity: int = 1_000_000, share: float = 0.5,
                 machine: type[Holding] = Holding) -> None:
        self.store = MemoryStore(US, capacity)
        config = NodeConfig(name="desk", role=Role.DESK, max_share_per_peer=share)
        self.links: dict[str, Link] = {CAM: link(CAM), OTHER: link(OTHER)}
        self.holding = machine(self.store, config, self.links)

    def apply(self, effects: list[Effect]) -> list[Effect]:
        for effect in effects:
            if isinstance(effect, Expect):
                self.links[effect.peer_id].expect(effect.expected)
            elif isinstance(effect, Cancel):
                self.links[effect.peer_id].cancel(effect.image_id, effect.purpose)
        return effects

    def step(self, peer_id: str, what: str, call: object, image_id: str = IMAGE) -> list[Effect]:
        """Run one input and check the state it leaves against the table."""
        before = self.holding.state_of(peer_id, image_id)
        assert callable(call)
        out = self.apply(call())
        after = self.holding.state_of(peer_id, image_id)
        allowed = TRANSITIONS.get((before, what))
        assert allowed is not None and after in allowed, (before, what, after)
        return out

    def request(self, peer_id: str = CAM, size: int = len(DATA), owner: str = CAM,
                image_id: str = IMAGE) -> list[Effect]:
        msg = DisperseRequest(image_id, size, owner)
        return self.step(peer_id, "request", lambda: self.holding.on_request(peer_id, msg),
                         image_id)

    def arrive(self, peer_id: str = CAM) -> list[Effect]:
        """The stream lands whole and verified (as protocol/inbound.py does it)."""
        digest = hashlib.sha256(DATA).hexdigest()

        def land() -> list[Effect]:
            self.links[peer_id].expected.pop((IMAGE, Purpose.DISPERSE))
            self.store.write_partial(IMAGE, Incoming.HELD, 0, DATA)
            self.store.finish_partial(IMAGE, Incoming.HELD, digest, NOW, owner=peer_id)
            return self.holding.held_complete(peer_id, IMAGE, digest)

        return self.step(peer_id, "complete", land)


def sends(effects: list[Effect]) -> list[tuple[str, object]]:
    return [(e.peer_id, e.message) for e in effects if isinstance(e, Send)]


def test_a_request_with_room_is_accepted_reserved_and_its_stream_expected() -> None:
    rig = Rig()
    out = rig.request()
    assert sends(out) == [(CAM, DisperseAccept(IMAGE, len(DATA), 0))]
    expect = next(e for e in out if isinstance(e, Expect))
    assert (expect.expected.kind, expect.expected.owner, expect.expected.size) == (
        Incoming.HELD, CAM, len(DATA))
    assert out.index(expect) < out.index(next(e for e in out if isinstance(e, Send)))
    assert rig.store.usage().reserved == len(DATA)  # durable before the accept leaves
    assert rig.holding.state_of(CAM, IMAGE) is HoldState.RESERVED


def test_a_request_naming_another_owner_is_a_protocol_error_and_reserves_nothing() -> None:
    rig = Rig()
    with pytest.raises(RemoteProtocolError) as caught:
        rig.holding.on_request(CAM, DisperseRequest(IMAGE, len(DATA), OTHER))
    assert caught.value.code == "bad-owner"
    assert rig.store.usage().reserved == 0
    assert rig.holding.state_of(CAM, IMAGE) is HoldState.NONE


def test_a_holder_above_its_mark_rejects_saying_why_and_how_much_room_it_has() -> None:
    rig = Rig(capacity=100_000)  # mark at 90 000
    out = rig.request(size=95_000)
    [(peer, reject)] = sends(out)
    assert peer == CAM and isinstance(reject, DisperseReject)
    assert "high-water" in reject.reason and reject.free == 100_000
    assert rig.store.usage().reserved == 0
    assert not any(isinstance(e, Expect) for e in out)


def test_one_peer_may_not_take_more_than_its_share_of_the_card() -> None:
    rig = Rig(capacity=1_000_000, share=0.05)  # 50 000 bytes a peer
    rig.request()  # 25 600 reserved for CAM
    second = hashlib.sha256(b"second").hexdigest()
    [(_, reject)] = sends(rig.request(size=len(DATA), image_id=second))
    assert isinstance(reject, DisperseReject) and "your share" in reject.reason
    # Another owner's share is its own.
    [(_, accept)] = sends(rig.request(OTHER, owner=OTHER, image_id=second))
    assert isinstance(accept, DisperseAccept)


def test_a_verified_stream_is_answered_stored_and_asked_again_it_says_stored_again() -> None:
    rig = Rig()
    rig.request()
    digest = hashlib.sha256(DATA).hexdigest()
    out = rig.arrive()
    assert sends(out) == [(CAM, Stored(IMAGE, digest))]
    assert [e.event for e in out if isinstance(e, Emit)] == [ev.HeldStored(IMAGE, CAM)]
    assert sends(rig.request()) == [(CAM, Stored(IMAGE, digest))]  # no second reservation
    assert rig.store.usage().reserved == 0


def test_only_its_owner_releases_a_held_original() -> None:
    rig = Rig()
    rig.request()
    rig.arrive()
    out = rig.step(OTHER, "release", lambda: rig.holding.on_release(OTHER, Release(IMAGE)))
    assert out == [] and rig.store.held(IMAGE) is not None
    out = rig.step(CAM, "release", lambda: rig.holding.on_release(CAM, Release(IMAGE)))
    assert [e.event for e in out if isinstance(e, Emit)] == [ev.Released(IMAGE, CAM)]
    assert rig.store.held(IMAGE) is None


def test_a_release_before_the_original_is_stored_frees_the_room_and_the_bytes() -> None:
    rig = Rig()
    rig.request()
    rig.store.write_partial(IMAGE, Incoming.HELD, 0, DATA[:1000])
    out = rig.step(CAM, "release", lambda: rig.holding.on_release(CAM, Release(IMAGE)))
    assert out == [Cancel(CAM, IMAGE, Purpose.DISPERSE)]
    assert rig.store.usage().reserved == 0 and rig.store.usage().used == 0
    assert rig.store.partial_offset(IMAGE, Incoming.HELD) == 0
    # A Release for nothing we know changes nothing.
    assert rig.step(CAM, "release", lambda: rig.holding.on_release(CAM, Release(IMAGE))) == []


def test_a_request_again_resumes_from_the_bytes_already_here() -> None:
    rig = Rig()
    rig.request()
    rig.store.write_partial(IMAGE, Incoming.HELD, 0, DATA[:1000])
    rig.links[CAM] = link(CAM)  # the link broke and came back: nothing expected on it
    assert sends(rig.request()) == [(CAM, DisperseAccept(IMAGE, len(DATA), 1000))]


def test_the_planted_holder_accepts_past_its_mark_and_reserves_nothing() -> None:
    """sim/planted.py's "accept-past-capacity": the real machine rejects the same request."""
    planted = Rig(capacity=100_000, machine=AcceptPastCapacity)
    [(_, accept)] = sends(planted.request(size=95_000))
    assert isinstance(accept, DisperseAccept) and planted.store.usage().reserved == 0
    [(_, reject)] = sends(Rig(capacity=100_000).request(size=95_000))
    assert isinstance(reject, DisperseReject)
