"""The pumps of each live link: a reader that feeds the node what the peer sent, and a
writer that sends what the node has for the peer (STYLE.md rule 6).

Outgoing frames are pulled per peer with ``next_frame`` only when that peer's socket can
take more, and the socket is told to keep little unsent data (TCP_NOTSENT_LOWAT), so a new
thumbnail waits behind at most about one chunk (DESIGN.md, "Wire").  Whatever ends a pump
(the peer closing, a protocol violation, a slow peer, a bug) ends that link, not the node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from mesh import tls
from mesh.identity import short_id_of
from mesh.transport import LinkStream
from protocol.codec import FrameEdges
from protocol.errors import RemoteProtocolError

if TYPE_CHECKING:
    from mesh.runtime import Runtime

log = logging.getLogger("cammesh.node")

SEND_TIMEOUT = 30.0  # one frame to a peer; a peer that takes longer is cut off
LAST_WORD_TIMEOUT = 2.0  # our Error frame after a protocol violation
RECEIVE_SIZE = 256 * 1024
RECEIVE_BUFFER = 4 * 1024 * 1024  # read ahead of the node by at most this much
# Bytes handed to the node per call (one thread hop, one fsync per partial, one catalog
# commit): a new thumbnail waits for one call, a few milliseconds at this size.
RECEIVE_BATCH = 1024 * 1024
PULL_BYTES = 64 * 1024  # per worker-thread call: small frames up to, and then, one chunk


@dataclass
class PeerLink:
    """A live, authenticated connection to one peer and the scope that runs its pumps."""

    peer_id: str
    stream: LinkStream
    initiated_locally: bool
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    bytes_in: int = 0
    bytes_out: int = 0
    since: float = field(default_factory=time.time)
    reason: str = "connection closed"
    violated: bool = False  # the peer broke the protocol: flush our Error, then close
    next_send_at: float = 0.0  # trio clock; pacing under ``rate_limit``
    # Set when the node may have frames for this peer; replaced by a fresh one each time.
    work: trio.Event = field(default_factory=trio.Event)

    def wake(self) -> None:
        self.work.set()
        self.work = trio.Event()


class Pumps:
    """The reader and writer of every live link of one runtime, and the wake-up of its writers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def wake(self, peers: Iterable[str]) -> None:
        """Wake the idle writers of ``peers``, those the node says it has frames for
        (``Node.sending_peers``, optimistic, never pessimistic): as sim/ pulls, no writer
        pulls for nothing.  A writer's own pull wakes no one, or idle writers would spin.
        """
        links = self.runtime.links
        for peer in peers:
            link = links.get(peer)
            if link is not None:
                link.wake()

    async def run(self, link: PeerLink) -> None:
        """Read and write ``link`` until either side ends it (``link.reason`` says why)."""
        with link.scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, link, self._reader)
                nursery.start_soon(self._pump, link, self._writer)

    async def _pump(self, link: PeerLink, pump: Callable[[PeerLink], Any]) -> None:
        """Run a reader or writer; whatever ends it ends the link, with the reason kept."""
        try:
            await pump(link)
        except RemoteProtocolError as exc:
            link.reason = f"protocol error: {exc}"
            link.violated = True
            log.warning("closing %s: %s", short_id_of(link.peer_id), exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            link.reason = f"link broke: {exc.__cause__ or exc!r}"
        except trio.TooSlowError:
            link.reason = f"the peer took more than {SEND_TIMEOUT:g} s to take one frame"
        except Exception as exc:
            # A bug or a disk error while serving one peer closes that link, not the node.
            log.exception("closing %s after an unexpected error", short_id_of(link.peer_id))
            link.reason = f"unexpected error: {exc!r}"
        link.scope.cancel()

    async def _reader(self, link: PeerLink) -> None:
        """Read eagerly into a bounded buffer while the node digests what came before.

        The node makes every chunk durable (fsync) before it returns; reading only between
        those calls let the kernel's receive window close during a slow fsync and the link
        idle.  The buffer is bounded, so a card slower than the link still slows the peer.
        """
        # Counted in TLS records, the least a read returns, so the buffer holds its bytes.
        send, receive = trio.open_memory_channel[bytes](RECEIVE_BUFFER // tls.RECORD_SIZE)
        failed: list[Exception] = []  # re-raised bare, outside the nursery's exception group

        async def guarded(job: Callable[[], Awaitable[None]], nursery: trio.Nursery) -> None:
            try:
                await job()
            except Exception as exc:
                failed.append(exc)
                nursery.cancel_scope.cancel()

        async def read() -> None:
            async with send:
                while data := await link.stream.receive_some(RECEIVE_SIZE):
                    link.bytes_in += len(data)
                    await send.send(data)
            link.reason = "closed by the peer"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded, lambda: self._digest(link, receive), nursery)
            nursery.start_soon(guarded, read, nursery)
        if failed:
            raise failed[0]

    async def _digest(self, link: PeerLink, receive: trio.MemoryReceiveChannel[bytes]) -> None:
        """Hand the node what came in, once a frame is whole: on a slow link a chunk comes
        a TLS record at a time, and a node call (a thread hop and a catalog commit) for
        each record cost more CPU than the bytes themselves."""
        edges = FrameEdges()
        parts: list[bytes] = []
        size = 0
        whole = False
        async with receive:
            async for data in receive:
                while True:
                    parts.append(data)
                    size += len(data)
                    whole = edges.feed(data) or whole
                    if size >= RECEIVE_BATCH:
                        break
                    try:  # what else is already here
                        data = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                if not whole and size < RECEIVE_BATCH:
                    continue  # half a frame: the node could do nothing with it yet
                batch, parts, size, whole = b"".join(parts), [], 0, False
                try:
                    await self.runtime.call(self._receive, link.peer_id, batch)
                except RemoteProtocolError:
                    link.violated = True  # before any checkpoint: the writer must see it
                    raise

    async def _writer(self, link: PeerLink) -> None:
        rt = self.runtime
        while True:
            if rt.rate_limit:
                # Pace like a slow Wi-Fi link would, but decide what to send only once
                # the slot has come, so a new thumbnail is not stuck behind a chosen chunk.
                await trio.sleep_until(link.next_send_at)
            await link.stream.wait_send_all_might_not_block()
            work = link.work  # taken before the pull: a wake after it is not lost
            batch, more = await rt.call_quietly(self._pull, link.peer_id)
            if link.violated:
                # The node's last word (an Error) is in this batch: send it, and stop.
                with trio.CancelScope(shield=True), trio.move_on_after(LAST_WORD_TIMEOUT):
                    await link.stream.send_all(batch)
                return
            if batch:
                if rt.rate_limit:
                    start = max(link.next_send_at, trio.current_time())
                    link.next_send_at = start + len(batch) / rt.rate_limit
                with trio.fail_after(SEND_TIMEOUT):
                    await link.stream.send_all(batch)
                link.bytes_out += len(batch)
            if not (batch and more):
                await work.wait()  # until a node call leaves frames for this peer

    def _receive(self, peer_id: str, data: bytes) -> None:
        """Feed the node what a peer sent; the chunks in it become durable together, before
        the call returns and so before any frame it queued (an acknowledgement, a Stored)
        can leave (Card.batched_partials)."""
        rt = self.runtime
        with rt.card.batched_partials():
            rt.node.receive_data(peer_id, data, rt.now())

    def _pull(self, peer_id: str) -> tuple[bytes, bool]:
        """The next frames for one peer, in one worker-thread call: small ones up to
        ``PULL_BYTES``, or one chunk (b"" when there is nothing to send); and whether the
        node may have more for it (``Node.may_send``, as sim/ asks before it pulls again).

        Thumbnails and control frames are small; taking a few per thread hop saves hops on
        a loaded machine, while at most one chunk is decided ahead of a new thumbnail.
        """
        rt = self.runtime
        node = rt.node
        frames: list[bytes] = []
        size = 0
        budget = PULL_BYTES if not rt.rate_limit else 1  # paced: one frame per slot
        more = node.may_send(peer_id)
        while more and size < budget:
            frame = node.next_frame(peer_id, rt.now())
            if frame is None:
                more = False  # may_send was optimistic (a relay waiting for its bytes)
                break
            frames.append(frame)
            size += len(frame)
            more = node.may_send(peer_id)
        return b"".join(frames), more

    async def last_word(self, link: PeerLink) -> None:
        """After a protocol violation the node has one Error frame for the peer: try to send it."""
        rt = self.runtime
        try:
            frame = await rt.call_quietly(rt.node.next_frame, link.peer_id, rt.now())
            if frame:
                with trio.move_on_after(LAST_WORD_TIMEOUT):
                    await link.stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass  # the peer is gone already; the log has the reason
