"""protocol/serving.py alone, without a Node: what a peer is served, and each frame rendered.

The machine is built from a MemoryStore, a NodeConfig and a link made by hand; the rig
applies its effects to the link as the node does and checks every request and refusal
against the machine's own table.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest

from protocol import events as ev
from protocol.config import NodeConfig
from protocol.connection import Connection
from protocol.effects import (
    Drop,
    Effect,
    Emit,
    Promote,
    QueueOriginal,
    Relay,
    RelayRefused,
    ReleaseSent,
    Send,
    Tell,
    Unqueue,
)
from protocol.errors import RemoteProtocolError
from protocol.messages import (
    Chunk,
    Collect,
    OriginalComplete,
    OriginalHeader,
    Purpose,
    ReadOut,
    RefuseOriginal,
    Release,
    RequestOriginal,
    Role,
    ThumbnailOffer,
    TransferFailed,
)
from protocol.peer import Link
from protocol.scheduler import (
    Lane,
    Scheduler,
    SendChunk,
    SendComplete,
    SendHeader,
    SendThumbnail,
    Source,
)
from protocol.serving import TRANSITIONS, ServeState, Serving, state_of
from protocol.store import DispersalState, Incoming, TransferState, Where
from sim.memstore import MemoryStore

CAM = hashlib.sha256(b"camera").hexdigest()
DESK = hashlib.sha256(b"desk").hexdigest()
NOW = 1_700_000_000.0
DATA = bytes(range(256)) * 640  # 163,840 bytes: three chunks of 64 KiB
NOBODY = hashlib.sha256(b"a picture nobody had").hexdigest()


class Rig:
    """A Serving machine on a camera, one link to a desk, effects applied as the node does."""

    def __init__(self, *, key_recipient: bytes | None = None) -> None:
        self.store = MemoryStore(CAM, 1_000_000)
        self.link = Link(peer_id=DESK, conn=Connection(CAM, expected_peer=DESK),
                         scheduler=Scheduler(chunk_size=65536), connected_at=NOW, ready=True,
                         key_recipient=key_recipient)
        self.serving = Serving(self.store, NodeConfig(name="cam", role=Role.CAMERA),
                               {DESK: self.link})
        self.image_id = self.store.add_local(DATA, name="p.jpg", now=NOW, capture_time=NOW).image_id

    def apply(self, effects: list[Effect]) -> list[Effect]:
        sched = self.link.scheduler
        for effect in effects:
            if isinstance(effect, QueueOriginal):
                self.link.ensure_thumbnail(effect.record, effect.transfer.image_id)
                sched.add_transfer(effect.transfer)
            elif isinstance(effect, Promote):
                sched.promote(effect.image_id, effect.purpose, effect.lane)
            elif isinstance(effect, Drop):
                sched.drop(effect.image_id, effect.purpose)
            elif isinstance(effect, Unqueue):
                sched.refuse(effect.image_id)
        return effects

    def step(self, image_id: str, purpose: Purpose, what: str,
             call: Callable[[], list[Effect]]) -> list[Effect]:
        before = state_of(self.link, image_id, purpose)
        out = self.apply(call())
        after = state_of(self.link, image_id, purpose)
        assert after in TRANSITIONS[(before, what)], (before, what, after)
        return out

    def request(self, image_id: str | None = None, *, urgent: bool = True,
                offset: int = 0) -> list[Effect]:
        msg = RequestOriginal(image_id or self.image_id, urgent, offset)
        return self.step(msg.image_id, Purpose.SYNC, "request",
                         lambda: self.serving.on_request(self.link, msg, NOW))

    def frames(self) -> list[object]:
        """Pull every frame the link has now, rendered, as Node.next_frame does."""
        out = []
        while (item := self.link.scheduler.pop()) is not None:
            msg = self.serving.render(self.link, item, NOW)
            self.apply(self.serving.take())
            if msg is not None:
                out.append(msg)
        return out


def sends(effects: list[Effect]) -> list[object]:
    return [e.message for e in effects if isinstance(e, Send)]


def test_a_request_queues_the_original_behind_its_thumbnail_and_renders_it_from_the_card() -> None:
    rig = Rig()
    rig.request()
    assert state_of(rig.link, rig.image_id, Purpose.SYNC) is ServeState.QUEUED
    assert rig.store.transfer_state(DESK, rig.image_id) is TransferState.REQUESTED
    frames = rig.frames()
    assert [type(f) for f in frames] == [ThumbnailOffer, OriginalHeader, Chunk, Chunk, Chunk,
                                         OriginalComplete]
    assert b"".join(f.data for f in frames if isinstance(f, Chunk)) == DATA
    assert rig.store.transfer_state(DESK, rig.image_id) is TransferState.ORIGINAL_SENT
    assert state_of(rig.link, rig.image_id, Purpose.SYNC) is ServeState.NONE


def test_the_completion_going_out_is_an_original_sent_event() -> None:
    rig = Rig()
    rig.request()
    item = None
    while not isinstance(item, SendComplete):
        item = rig.link.scheduler.pop()
        assert item is not None
        rig.serving.render(rig.link, item, NOW)
        out = rig.serving.take()
    assert [e.event for e in out if isinstance(e, Emit)] == [
        ev.OriginalSent(DESK, rig.image_id, Purpose.SYNC)]


def test_a_repeat_only_moves_the_queued_original_up() -> None:
    rig = Rig()
    rig.request(urgent=False)
    out = rig.request(urgent=True)
    assert out == [Promote(DESK, rig.image_id, Purpose.SYNC, Lane.URGENT)]
    transfer = rig.link.scheduler.transfer(rig.image_id, Purpose.SYNC)
    assert transfer is not None and transfer.lane is Lane.URGENT


def test_a_request_for_a_picture_never_had_is_refused_and_writes_nothing() -> None:
    rig = Rig()
    out = rig.request(NOBODY)
    assert sends(out) == [TransferFailed(NOBODY, Purpose.SYNC,
                                         "this device does not have that original")]
    assert rig.store.transfer_state(DESK, NOBODY) is TransferState.UNTRANSMITTED


def test_a_request_past_the_end_cuts_the_peer_off() -> None:
    rig = Rig()
    with pytest.raises(RemoteProtocolError) as raised:
        rig.serving.on_request(rig.link, RequestOriginal(rig.image_id, True, len(DATA) + 1), NOW)
    assert raised.value.code == "bad-offset"


def dispersed(rig: Rig) -> None:
    rig.store.set_dispersion(rig.image_id, "h" * 64, DispersalState.STORED, NOW)
    rig.store.free_original(rig.image_id, NOW)
    record = rig.store.image(rig.image_id)
    assert record is not None and record.where is Where.DISPERSED


def test_an_urgent_request_for_one_of_ours_dispersed_is_handed_to_the_collections() -> None:
    rig = Rig()
    dispersed(rig)
    out = rig.request(offset=5)
    assert [e.notice for e in out if isinstance(e, Tell)] == [
        Relay(DESK, rig.image_id, Purpose.SYNC, 5, NOW)]
    assert sends(out) == []


def test_a_background_pull_of_one_of_ours_dispersed_is_refused_not_collected() -> None:
    rig = Rig()
    dispersed(rig)
    out = rig.request(urgent=False)
    assert not [e for e in out if isinstance(e, Tell)]
    assert [type(m) for m in sends(out)] == [TransferFailed]


def test_a_smaller_copy_that_cannot_be_made_is_refused_with_the_reason() -> None:
    rig = Rig()  # DATA is no picture Pillow can read
    msg = RequestOriginal(rig.image_id, True, 0, max_side=100)
    out = rig.step(rig.image_id, Purpose.SMALLER, "request",
                   lambda: rig.serving.on_request(rig.link, msg, NOW))
    [failed] = sends(out)
    assert isinstance(failed, TransferFailed) and "cannot make a smaller copy" in failed.reason


def test_a_refusal_unqueues_the_original_tells_the_relay_and_is_remembered() -> None:
    rig = Rig()
    rig.request()
    out = rig.step(rig.image_id, Purpose.SYNC, "refuse",
                   lambda: rig.serving.on_refuse(rig.link, RefuseOriginal(rig.image_id)))
    assert [e.notice for e in out if isinstance(e, Tell)] == [
        RelayRefused(DESK, rig.image_id, Purpose.SYNC)]
    assert rig.store.transfer_state(DESK, rig.image_id) is TransferState.REFUSED
    assert state_of(rig.link, rig.image_id, Purpose.SYNC) is ServeState.NONE


def test_an_original_freed_while_queued_turns_into_a_refusal_not_stale_bytes() -> None:
    rig = Rig()
    rig.request()
    header = rig.link.scheduler.pop()
    assert isinstance(rig.link.scheduler.pop() if isinstance(header, SendThumbnail) else header,
                      SendHeader)
    dispersed(rig)
    item = rig.link.scheduler.pop()
    assert isinstance(item, SendChunk)
    before = state_of(rig.link, rig.image_id, Purpose.SYNC)
    msg = rig.serving.render(rig.link, item, NOW)
    rig.apply(rig.serving.take())
    assert isinstance(msg, TransferFailed) and msg.purpose is Purpose.SYNC
    assert state_of(rig.link, rig.image_id, Purpose.SYNC) in TRANSITIONS[(before, "pull")]
    assert state_of(rig.link, rig.image_id, Purpose.SYNC) is ServeState.NONE


def test_a_release_going_out_is_told_to_dispersal() -> None:
    rig = Rig()
    rig.link.scheduler.send_control(Release(rig.image_id))
    assert rig.frames() == [Release(rig.image_id)]
    item_effects = rig.serving.take()
    assert item_effects == []  # frames() applied them; render again to see the notice
    rig.link.scheduler.send_control(Release(rig.image_id))
    item = rig.link.scheduler.pop()
    assert item is not None
    rig.serving.render(rig.link, item, NOW)
    assert [e.notice for e in rig.serving.take() if isinstance(e, Tell)] == [
        ReleaseSent(DESK, rig.image_id)]


def test_a_thumbnail_offer_is_remembered_as_sent_and_carries_a_wrapped_key_only_when_asked(
) -> None:
    class Wrapping:
        def wrap(self, key: bytes, image_id: str, recipient: bytes) -> bytes:
            return b"wrapped for " + recipient

    rig = Rig()
    rig.link.scheduler.queue_thumbnail(rig.image_id, NOW)
    [offer] = rig.frames()
    assert isinstance(offer, ThumbnailOffer) and offer.wrapped_key is None
    assert offer.has_original and offer.size == len(DATA)
    assert rig.store.transfer_state(DESK, rig.image_id) is TransferState.THUMBNAIL_SENT

    keyed = Rig(key_recipient=b"desk key")
    keyed.serving.config = dataclasses.replace(keyed.serving.config, sealer=Wrapping())  # type: ignore[arg-type]
    keyed.link.scheduler.queue_thumbnail(keyed.image_id, NOW)
    [offer] = keyed.frames()
    assert isinstance(offer, ThumbnailOffer) and offer.wrapped_key == b"wrapped for desk key"


def test_a_peer_s_read_out_of_a_local_original_is_queued_urgent_and_past_its_end_refused() -> None:
    rig = Rig()
    msg = ReadOut(rig.image_id, 0)
    out = rig.step(rig.image_id, Purpose.READOUT, "read-out",
                   lambda: rig.serving.on_readout(rig.link, msg, NOW))
    [queued] = [e for e in out if isinstance(e, QueueOriginal)]
    assert queued.transfer.lane is Lane.URGENT and queued.transfer.size == len(DATA)
    with pytest.raises(RemoteProtocolError) as raised:
        rig.serving.on_readout(rig.link, ReadOut(rig.image_id, len(DATA) + 1), NOW)
    assert raised.value.code == "bad-offset"


def test_a_read_out_of_what_we_have_no_copy_of_is_refused_and_of_ours_dispersed_relayed() -> None:
    rig = Rig()
    out = rig.serving.on_readout(rig.link, ReadOut(NOBODY, 0), NOW)
    assert [type(m) for m in sends(out)] == [TransferFailed]
    dispersed(rig)
    out = rig.serving.on_readout(rig.link, ReadOut(rig.image_id, 3), NOW)
    assert [e.notice for e in out if isinstance(e, Tell)] == [
        Relay(DESK, rig.image_id, Purpose.READOUT, 3, NOW)]


def test_a_collect_is_served_from_what_we_hold_for_that_owner_only() -> None:
    rig = Rig()
    held = hashlib.sha256(b"sealed bytes").hexdigest()
    rig.store.reserve(held, 12)
    rig.store.write_partial(held, Incoming.HELD, 0, b"sealed bytes")
    rig.store.finish_partial(held, Incoming.HELD, held, NOW, owner=DESK)
    out = rig.step(held, Purpose.COLLECT, "collect",
                   lambda: rig.serving.on_collect(rig.link, Collect(held, 0), NOW))
    [queued] = [e for e in out if isinstance(e, QueueOriginal)]
    assert queued.transfer.source is Source.HELD and queued.transfer.lane is Lane.DISPERSAL
    # Our own original is no held copy: a Collect for it is refused.
    out = rig.serving.on_collect(rig.link, Collect(rig.image_id, 0), NOW)
    assert sends(out) == [TransferFailed(rig.image_id, Purpose.COLLECT,
                                         "this device holds no copy of it")]
