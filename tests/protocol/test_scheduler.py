"""The outgoing scheduler: thumbnails first, bounded chunks, refusals, request order (FIG. 10, 13B)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError
from protocol.messages import Limits, Ping, Purpose
from protocol.scheduler import (
    Lane,
    Scheduler,
    SendChunk,
    SendComplete,
    SendHeader,
    SendMessage,
    SendThumbnail,
    Source,
    Transfer,
)
from sim.planted import ChunkBeforeThumbnail

PEER = "b" * 64
CHUNK = Limits.MIN_CHUNK
IDS = [hashlib.sha256(bytes([i])).hexdigest() for i in range(6)]
SIZES = [1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 2 * CHUNK, 5]


def transfer(i: int, lane: Lane, purpose: Purpose = Purpose.SYNC) -> Transfer:
    return Transfer(
        image_id=IDS[i],
        purpose=purpose,
        lane=lane,
        size=SIZES[i],
        digest=IDS[i],
        offset=0,
        destination=PEER,
        owner="a" * 64,
        source=Source.ORIGINAL,
    )


@dataclass(frozen=True)
class Op:
    kind: str  # capture, request, refuse, control, pop
    image: int = 0
    urgent: bool = False
    count: int = 1


ops = st.lists(
    st.one_of(
        st.builds(Op, st.just("capture"), st.integers(0, 5)),
        st.builds(Op, st.just("request"), st.integers(0, 5), st.booleans()),
        st.builds(Op, st.just("refuse"), st.integers(0, 5)),
        st.builds(Op, st.just("control")),
        st.builds(Op, st.just("pop"), count=st.integers(1, 6)),
    ),
    max_size=60,
)


@given(ops)
def test_every_interleaving_keeps_the_scheduler_rules(script: list[Op]) -> None:
    sched = Scheduler(chunk_size=CHUNK)
    clock = 0.0
    thumbs_sent: set[str] = set()
    captured: set[int] = set()
    awaiting_thumb: set[str] = set()  # captured, thumbnail not yet out
    refused: set[str] = set()  # refused and not asked for again
    urgent: list[str] = []  # the model of the urgent lane: request order
    tracked: set[str] = set()  # urgent requests made after the capture (order is checkable)

    def pop_one() -> bool:
        item = sched.pop()
        if item is None:
            return False
        if isinstance(item, SendThumbnail):
            thumbs_sent.add(item.image_id)
            awaiting_thumb.discard(item.image_id)
            return True
        if isinstance(item, SendMessage):
            return True
        image_id = item.transfer.image_id
        # Thumbnail before any header or chunk of its original, on this link.
        assert image_id in thumbs_sent
        # A refused picture sends nothing more.
        assert image_id not in refused
        if isinstance(item, SendChunk):
            # After a capture, no chunk goes out before that capture's thumbnail.
            assert not awaiting_thumb, "a chunk overtook a newly captured picture's thumbnail"
            assert 0 < item.length <= CHUNK
        if image_id in tracked and isinstance(item, SendHeader | SendChunk):
            eligible = [u for u in urgent if u in tracked]
            assert eligible[0] == image_id, "urgent originals go in request order"
        if isinstance(item, SendComplete):
            if image_id in urgent:
                urgent.remove(image_id)
            tracked.discard(image_id)
        return True

    for op in script:
        image_id = IDS[op.image]
        if op.kind == "capture":
            clock += 1.0
            captured.add(op.image)
            if image_id not in thumbs_sent:
                awaiting_thumb.add(image_id)
            sched.queue_thumbnail(image_id, clock)
        elif op.kind == "request":
            refused.discard(image_id)
            lane = Lane.URGENT if op.urgent else Lane.BACKGROUND
            sched.add_transfer(transfer(op.image, lane))
            current = sched.transfer(image_id, Purpose.SYNC)
            assert current is not None
            if current.lane is Lane.URGENT and image_id not in urgent:
                urgent.append(image_id)
                if op.image in captured:
                    tracked.add(image_id)
        elif op.kind == "refuse":
            sched.refuse(image_id)
            refused.add(image_id)
            if image_id in urgent:
                urgent.remove(image_id)
            tracked.discard(image_id)
        elif op.kind == "control":
            sched.send_control(Ping(1))
        else:
            for _ in range(op.count):
                pop_one()
    while pop_one():
        pass
    # Everything whose thumbnail went out and was not refused was fully sent.
    for t in sched.transfers():
        assert t.image_id not in thumbs_sent


def drain(sched: Scheduler) -> list[object]:
    out: list[object] = []
    while (item := sched.pop()) is not None:
        out.append(item)
    return out


def test_control_then_thumbnails_newest_first_then_lanes_in_order() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    for i in range(4):
        sched.queue_thumbnail(IDS[i], float(i))
    sched.add_transfer(transfer(0, Lane.BACKGROUND))
    sched.add_transfer(transfer(1, Lane.DISPERSAL, Purpose.DISPERSE))
    sched.add_transfer(transfer(2, Lane.URGENT))
    sched.send_control(Ping(7))
    items = drain(sched)
    assert items[0] == SendMessage(Ping(7))
    assert [i.image_id for i in items[1:5] if isinstance(i, SendThumbnail)] == [
        IDS[3], IDS[2], IDS[1], IDS[0]
    ]
    headers = [i.transfer.image_id for i in items if isinstance(i, SendHeader)]
    assert headers == [IDS[2], IDS[1], IDS[0]]  # urgent, dispersal, background


def test_a_new_thumbnail_waits_for_at_most_one_chunk() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.queue_thumbnail(IDS[3], 1.0)
    sched.add_transfer(transfer(3, Lane.BACKGROUND))
    assert isinstance(sched.pop(), SendThumbnail)
    assert isinstance(sched.pop(), SendHeader)
    assert isinstance(sched.pop(), SendChunk)  # one chunk is on the wire
    sched.queue_thumbnail(IDS[4], 2.0)
    assert sched.pop() == SendThumbnail(IDS[4])
    step = sched.pop()
    assert isinstance(step, SendChunk) and step.offset == CHUNK  # resumes where it was


def test_the_header_waits_for_the_thumbnail_whatever_the_lane() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.add_transfer(transfer(0, Lane.URGENT))
    assert sched.pop() is None  # no thumbnail on this link yet: nothing may go
    sched.mark_thumbnail_known(IDS[0])  # the peer's catalog says it has it
    assert isinstance(sched.pop(), SendHeader)


def test_the_planted_bug_lets_chunks_overtake_thumbnails() -> None:
    sched = ChunkBeforeThumbnail(chunk_size=CHUNK)
    sched.queue_thumbnail(IDS[0], 1.0)
    sched.add_transfer(transfer(0, Lane.URGENT))
    assert isinstance(sched.pop(), SendHeader)


def test_a_request_promotes_a_background_original_keeping_its_offset() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    for i in (3, 4):
        sched.mark_thumbnail_known(IDS[i])
    sched.add_transfer(transfer(3, Lane.BACKGROUND))
    sched.add_transfer(transfer(4, Lane.BACKGROUND))
    sched.pop()
    sched.pop()  # header and first chunk of 3
    sched.add_transfer(transfer(4, Lane.URGENT))
    assert isinstance(first := sched.pop(), SendHeader) and first.transfer.image_id == IDS[4]
    rest = drain(sched)
    chunks_of_3 = [i for i in rest if isinstance(i, SendChunk) and i.transfer.image_id == IDS[3]]
    assert chunks_of_3[0].offset == CHUNK


def test_resume_from_an_offset_and_a_relay_waits_for_bytes() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.mark_thumbnail_known(IDS[3])
    t = transfer(3, Lane.URGENT)
    t.offset = CHUNK + 1
    t.available = CHUNK + 1
    t.may_complete = False
    sched.add_transfer(t)
    assert isinstance(sched.pop(), SendHeader)
    assert sched.pop() is None  # no bytes from the holder yet
    t.available = t.size
    items = drain(sched)
    assert [type(i) for i in items] == [SendChunk] * 3  # 2 * CHUNK + 6 bytes left
    assert sched.pop() is None  # may not complete: the digest was not verified yet
    t.may_complete = True
    assert isinstance(sched.pop(), SendComplete)


def test_chunk_size_is_bounded() -> None:
    with pytest.raises(LocalProtocolError):
        Scheduler(chunk_size=Limits.MAX_CHUNK + 1)
