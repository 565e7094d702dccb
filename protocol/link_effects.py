"""The effects that write one link (protocol.effects), carried out on it: ``Node.apply``
hands each one here, in the order its machine asked for them."""

from __future__ import annotations

from protocol.effects import (
    Cancel,
    Closed,
    Drop,
    Expect,
    Greeted,
    Hurry,
    Opened,
    Promote,
    QueueOriginal,
    QueueStrip,
    QueueThumbnail,
    Ready,
    Send,
    Settled,
    ThumbnailKnown,
    Unqueue,
)
from protocol.peer import Link

LinkEffect = (
    Send | Expect | Cancel | Hurry | QueueThumbnail | QueueStrip | ThumbnailKnown | Greeted | Ready
    | QueueOriginal | Promote | Drop | Unqueue | Opened | Closed | Settled
)


def carry_out(link: Link, effect: LinkEffect) -> None:
    """Write ``effect`` to ``link``, its scheduler or its streams."""
    if isinstance(effect, Send):
        link.scheduler.send_control(effect.message)
    elif isinstance(effect, QueueStrip):
        link.scheduler.queue_strip(effect.image_id, effect.capture_time)
    elif isinstance(effect, QueueThumbnail):
        link.scheduler.queue_thumbnail(effect.image_id, effect.capture_time)
    elif isinstance(effect, ThumbnailKnown):
        link.scheduler.mark_thumbnail_known(effect.image_id)
    elif isinstance(effect, Greeted):
        link.hello, link.free = effect.hello, effect.hello.free
    elif isinstance(effect, Ready):
        link.catalog, link.ready = effect.catalog, True
    elif isinstance(effect, Expect):
        link.expect(effect.expected)
    elif isinstance(effect, Cancel):
        link.cancel(effect.image_id, effect.purpose)
    elif isinstance(effect, Hurry):
        link.expected[(effect.image_id, effect.purpose)].urgent = True
    elif isinstance(effect, QueueOriginal):
        link.ensure_thumbnail(effect.record, effect.transfer.image_id)  # FIG. 24: it goes first
        link.scheduler.add_transfer(effect.transfer)
    elif isinstance(effect, Promote):
        link.scheduler.promote(effect.image_id, effect.purpose, effect.lane)
    elif isinstance(effect, Drop):
        link.scheduler.drop(effect.image_id, effect.purpose)
    elif isinstance(effect, Unqueue):
        link.scheduler.refuse(effect.image_id)
    elif isinstance(effect, Opened):
        stream = effect.stream
        link.streams[(stream.expected.image_id, stream.expected.purpose)] = stream
    elif isinstance(effect, Closed):
        key = (effect.image_id, effect.purpose)
        del link.streams[key]
        del link.expected[key]
        if effect.crossed:
            link.cancelled.add(key)
    else:
        link.cancelled.discard((effect.image_id, effect.purpose))
