"""Kill-tests for protocol/scheduler.py's mutants (issue 14): each pins one rule of the queue.

The rules are the scheduler's own (module docstring): control first, thumbnails
newest capture first, originals by lane in request order, one bounded chunk per
pull, and the counts `cammesh status` shows.
"""

from __future__ import annotations

import hashlib

import pytest

from protocol.errors import LocalProtocolError
from protocol.messages import Limits, Ping, Purpose
from protocol.scheduler import (
    Lane,
    QueueLengths,
    Scheduler,
    SendChunk,
    SendComplete,
    SendHeader,
    SendMessage,
    SendThumbnail,
    Source,
    Transfer,
)

CHUNK = Limits.MIN_CHUNK
IDS = [hashlib.sha256(bytes([i])).hexdigest() for i in range(8)]


def transfer(
    i: int, lane: Lane = Lane.BACKGROUND, purpose: Purpose = Purpose.SYNC, size: int = 10
) -> Transfer:
    return Transfer(
        image_id=IDS[i],
        purpose=purpose,
        lane=lane,
        size=size,
        digest=IDS[i],
        offset=0,
        destination="b" * 64,
        owner="a" * 64,
        source=Source.ORIGINAL,
    )


def drain(sched: Scheduler) -> list[object]:
    out: list[object] = []
    while (item := sched.pop()) is not None:
        out.append(item)
    return out


@pytest.mark.parametrize("size", [Limits.MIN_CHUNK, Limits.MAX_CHUNK])
def test_the_chunk_size_may_be_either_bound(size: int) -> None:
    sched = Scheduler(chunk_size=size)
    sched.mark_thumbnail_known(IDS[0])
    sched.add_transfer(transfer(0, size=size + 1))
    drain_ = drain(sched)
    assert [i.length for i in drain_ if isinstance(i, SendChunk)] == [size, 1]


@pytest.mark.parametrize("size", [Limits.MIN_CHUNK - 1, Limits.MAX_CHUNK + 1])
def test_a_chunk_size_past_a_bound_is_a_config_error_that_names_the_range(size: int) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        Scheduler(chunk_size=size)
    assert caught.value.code == "config"
    assert str(caught.value) == (
        f"chunk size {size} is outside [{Limits.MIN_CHUNK}, {Limits.MAX_CHUNK}]; "
        "pick one in that range"
    )


def test_every_kind_of_work_wakes_the_node_and_a_repeat_does_not() -> None:
    woken: list[str] = []
    sched = Scheduler(chunk_size=CHUNK, on_work=lambda: woken.append("work"))
    sched.send_control(Ping(1))
    assert woken == ["work"]
    sched.queue_thumbnail(IDS[0], 1.0)
    assert woken == ["work"] * 2
    sched.queue_thumbnail(IDS[0], 1.0)  # already queued
    assert woken == ["work"] * 2
    sched.add_transfer(transfer(0))
    assert woken == ["work"] * 3
    sched.add_transfer(transfer(0, Lane.URGENT))  # a repeat only promotes
    assert woken == ["work"] * 3


def test_a_thumbnail_without_a_capture_time_goes_after_every_dated_one() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.queue_thumbnail(IDS[0], None)
    sched.queue_thumbnail(IDS[1], -1e12)  # long ago, but dated
    sched.queue_thumbnail(IDS[2], 5.0)
    assert drain(sched) == [SendThumbnail(IDS[2]), SendThumbnail(IDS[1]), SendThumbnail(IDS[0])]


def test_thumbnails_of_the_same_moment_go_most_recently_queued_first() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    for i in range(3):
        sched.queue_thumbnail(IDS[i], 7.0)
    assert drain(sched) == [SendThumbnail(IDS[2]), SendThumbnail(IDS[1]), SendThumbnail(IDS[0])]


def test_a_thumbnail_sent_or_known_is_never_queued_again() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.queue_thumbnail(IDS[0], 1.0)
    assert sched.thumbnail_queued(IDS[0]) and not sched.thumbnail_known(IDS[0])
    assert sched.pop() == SendThumbnail(IDS[0])
    assert sched.thumbnail_known(IDS[0]) and not sched.thumbnail_queued(IDS[0])
    sched.queue_thumbnail(IDS[0], 2.0)
    assert not sched.thumbnail_queued(IDS[0])
    assert sched.pop() is None
    assert not sched.has_work()


def test_a_thumbnail_the_peer_told_us_of_leaves_the_queue() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.queue_thumbnail(IDS[0], 1.0)
    sched.queue_thumbnail(IDS[1], 0.5)
    sched.mark_thumbnail_known(IDS[0])
    assert sched.thumbnail_known(IDS[0]) and not sched.thumbnail_queued(IDS[0])
    assert sched.lengths().thumbnails == 1
    assert drain(sched) == [SendThumbnail(IDS[1])]
    sched.mark_thumbnail_known(IDS[2])  # never queued: fine
    assert sched.thumbnail_known(IDS[2])


def test_a_repeat_returns_the_queued_stream_and_moves_it_only_towards_urgent() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    first = transfer(0, Lane.DISPERSAL, Purpose.DISPERSE)
    assert sched.add_transfer(first) is first
    again = transfer(0, Lane.BACKGROUND, Purpose.DISPERSE)
    assert sched.add_transfer(again) is first
    assert first.lane is Lane.DISPERSAL  # a less urgent repeat changes nothing
    sched.promote(IDS[0], Purpose.DISPERSE, Lane.DISPERSAL)  # same lane: nothing
    assert sched.lengths().dispersal == 1
    assert sched.add_transfer(transfer(0, Lane.URGENT, Purpose.DISPERSE)) is first
    assert sched.transfers()[0].lane is Lane.URGENT
    assert (sched.lengths().urgent, sched.lengths().dispersal) == (1, 0)
    assert sched.transfer(IDS[0], Purpose.DISPERSE) is first
    assert sched.transfer(IDS[0], Purpose.SYNC) is None
    sched.promote(IDS[1], Purpose.SYNC, Lane.URGENT)  # nothing queued: nothing happens
    assert sched.transfers() == [first]


def test_a_promoted_stream_goes_to_the_end_of_its_new_lane() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    for i in range(3):
        sched.mark_thumbnail_known(IDS[i])
    sched.add_transfer(transfer(0, Lane.URGENT))
    sched.add_transfer(transfer(1, Lane.BACKGROUND))
    sched.add_transfer(transfer(2, Lane.URGENT))
    sched.promote(IDS[1], Purpose.SYNC, Lane.URGENT)
    assert [t.image_id for t in sched.transfers()] == [IDS[0], IDS[2], IDS[1]]
    headers = [i.transfer.image_id for i in drain(sched) if isinstance(i, SendHeader)]
    assert headers == [IDS[0], IDS[2], IDS[1]]


def test_transfers_are_listed_by_lane_then_request_order() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.add_transfer(transfer(0, Lane.BACKGROUND))
    sched.add_transfer(transfer(1, Lane.DISPERSAL, Purpose.DISPERSE))
    sched.add_transfer(transfer(2, Lane.URGENT))
    sched.add_transfer(transfer(3, Lane.URGENT))
    assert [t.image_id for t in sched.transfers()] == [IDS[2], IDS[3], IDS[1], IDS[0]]


def test_drop_removes_one_stream_and_says_which() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    t = sched.add_transfer(transfer(0, Lane.URGENT))
    sched.add_transfer(transfer(0, Lane.DISPERSAL, Purpose.DISPERSE))
    assert sched.drop(IDS[0], Purpose.SYNC) is t
    assert sched.drop(IDS[0], Purpose.SYNC) is None
    assert [x.purpose for x in sched.transfers()] == [Purpose.DISPERSE]
    assert sched.lengths().urgent == 0
    assert sched.waiting() == 1


def test_a_refusal_drops_the_sync_and_smaller_streams_but_not_dispersal() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sync = sched.add_transfer(transfer(0, Lane.BACKGROUND))
    small = sched.add_transfer(transfer(0, Lane.URGENT, Purpose.SMALLER))
    sched.add_transfer(transfer(0, Lane.DISPERSAL, Purpose.DISPERSE))
    assert sched.refuse(IDS[0]) == [sync, small]
    assert [t.purpose for t in sched.transfers()] == [Purpose.DISPERSE]
    assert sched.refuse(IDS[0]) == []
    only_small = Scheduler(chunk_size=CHUNK)
    s = only_small.add_transfer(transfer(1, Lane.URGENT, Purpose.SMALLER))
    assert only_small.refuse(IDS[1]) == [s]


def test_control_goes_first_in_order_then_thumbnails_then_originals() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.mark_thumbnail_known(IDS[1])
    sched.add_transfer(transfer(1, Lane.URGENT, size=1))
    sched.queue_thumbnail(IDS[0], 1.0)
    sched.send_control(Ping(1))
    sched.send_control(Ping(2))
    items = drain(sched)
    assert items[:3] == [SendMessage(Ping(1)), SendMessage(Ping(2)), SendThumbnail(IDS[0])]
    assert [type(i) for i in items[3:]] == [SendHeader, SendChunk, SendComplete]


def test_a_stream_held_back_does_not_hold_back_the_next_one() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.mark_thumbnail_known(IDS[1])
    sched.add_transfer(transfer(0, Lane.URGENT))  # its thumbnail has not gone: waits
    sched.add_transfer(transfer(1, Lane.URGENT))
    relay = transfer(2, Lane.URGENT)
    relay.available = 0  # a relay with no bytes from the holder yet
    sched.mark_thumbnail_known(IDS[2])
    sched.add_transfer(relay)
    first = sched.pop()
    assert isinstance(first, SendHeader) and first.transfer.image_id == IDS[1]


def test_chunks_cover_the_original_exactly_and_then_it_completes_and_leaves() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.mark_thumbnail_known(IDS[0])
    t = sched.add_transfer(transfer(0, size=2 * CHUNK + 3))
    items = drain(sched)
    chunks = [(i.offset, i.length) for i in items if isinstance(i, SendChunk)]
    assert chunks == [(0, CHUNK), (CHUNK, CHUNK), (2 * CHUNK, 3)]
    assert items[-1] == SendComplete(t)
    assert t.offset == t.size
    assert sched.transfer(IDS[0], Purpose.SYNC) is None
    assert not sched.has_work() and sched.waiting() == 0


def test_an_empty_original_is_a_header_and_a_completion() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.mark_thumbnail_known(IDS[0])
    t = sched.add_transfer(transfer(0, size=0))
    assert drain(sched) == [SendHeader(t), SendComplete(t)]


def test_a_relay_sends_only_what_the_holder_sent_so_far() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    sched.mark_thumbnail_known(IDS[0])
    t = transfer(0, size=3 * CHUNK)
    t.available = CHUNK + 5
    t.may_complete = False
    assert t.sendable_to() == CHUNK + 5
    sched.add_transfer(t)
    items = drain(sched)
    assert [(i.offset, i.length) for i in items if isinstance(i, SendChunk)] == [
        (0, CHUNK),
        (CHUNK, 5),
    ]
    t.available = 10 * CHUNK  # more than the original: capped at its size
    assert t.sendable_to() == 3 * CHUNK
    items = drain(sched)
    assert [(i.offset, i.length) for i in items if isinstance(i, SendChunk)] == [
        (CHUNK + 5, CHUNK),
        (2 * CHUNK + 5, CHUNK - 5),
    ]
    assert sched.pop() is None and sched.has_work()  # done, but may not complete yet
    t.may_complete = True
    assert sched.pop() == SendComplete(t)
    everything = transfer(1, size=7)
    assert everything.sendable_to() == 7  # available -1: the whole original


def test_waiting_counts_control_and_streams_but_not_thumbnails() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    assert sched.waiting() == 0 and not sched.has_work()
    sched.queue_thumbnail(IDS[0], 1.0)
    assert sched.waiting() == 0 and sched.has_work()
    sched.send_control(Ping(1))
    assert sched.waiting() == 1
    sched.add_transfer(transfer(1))
    assert sched.waiting() == 2
    drain(sched)  # transfer 1's thumbnail never went: it stays
    assert sched.waiting() == 1 and sched.has_work()
    only_control = Scheduler(chunk_size=CHUNK)
    only_control.send_control(Ping(2))
    assert only_control.has_work()
    only_stream = Scheduler(chunk_size=CHUNK)
    only_stream.add_transfer(transfer(2))
    assert only_stream.has_work()


def test_lengths_count_each_queue_and_the_bytes_still_to_send() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    assert sched.lengths() == QueueLengths(0, 0, 0, 0, 0, 0)
    sched.send_control(Ping(1))
    sched.send_control(Ping(2))
    for i in range(3):
        sched.queue_thumbnail(IDS[i], float(i))
    sched.add_transfer(transfer(3, Lane.URGENT, size=CHUNK + 10))
    sched.add_transfer(transfer(4, Lane.DISPERSAL, Purpose.DISPERSE, size=20))
    sched.add_transfer(transfer(5, Lane.DISPERSAL, Purpose.DISPERSE, size=30))
    for i in (6, 7):
        sched.add_transfer(transfer(i, Lane.BACKGROUND, size=1))
    assert sched.lengths() == QueueLengths(
        control=2, thumbnails=3, urgent=1, dispersal=2, background=2,
        bytes_pending=CHUNK + 10 + 20 + 30 + 1 + 1,
    )
    sched.mark_thumbnail_known(IDS[3])
    for _ in range(2 + 3 + 2):  # control, thumbnails, header and first chunk of 3
        sched.pop()
    assert sched.lengths() == QueueLengths(
        control=0, thumbnails=0, urgent=1, dispersal=2, background=2,
        bytes_pending=10 + 20 + 30 + 1 + 1,
    )


def test_a_repeat_in_the_same_lane_keeps_the_stream_where_it_was_queued() -> None:
    sched = Scheduler(chunk_size=CHUNK)
    first = sched.add_transfer(transfer(0, Lane.BACKGROUND))
    second = sched.add_transfer(transfer(1, Lane.BACKGROUND))
    sched.add_transfer(transfer(0, Lane.BACKGROUND))
    sched.promote(IDS[0], Purpose.SYNC, Lane.BACKGROUND)
    assert sched.transfers() == [first, second]
