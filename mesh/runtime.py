"""The trio runtime of one device: a thin pump between sockets and the sans-IO node.

Read bytes -> feed the node -> drain its events -> write what it returns
(STYLE.md rule 6).  The node and the card it stores through are called one
call at a time, from a worker thread, so a disk read never stalls the trio
loop; ``call`` is the only way in.  Outgoing frames are pulled per peer with
``next_frame`` only when that peer's socket can take more, and the socket is
told to keep little unsent data (TCP_NOTSENT_LOWAT), so a new thumbnail waits
behind at most about one chunk (DESIGN.md, "Wire").
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh import tls
from mesh.errors import NotPaired, PairingError, PeerIdentityMismatch, ReadOutError, TransportError
from mesh.identity import Identity, exchange_public_key_of, short_id_of
from mesh.pairing import Membership, learn_members, load_membership
from protocol import events as ev
from protocol.codec import FrameEdges
from protocol.config import NodeConfig
from protocol.errors import CammeshError, RemoteProtocolError
from protocol.messages import MetadataValue, Role
from protocol.node import Node
from storage.card import Card
from storage.importer import Imported, ImportSummary, Skipped, files_under, import_one
from storage.sealing import Sealing

if TYPE_CHECKING:
    from mesh.ftp import FtpDoor

log = logging.getLogger("cammesh.node")

T = TypeVar("T")
ImportProgress = Callable[[int, int, "Imported | Skipped"], Awaitable[None]]

SEND_TIMEOUT = 30.0  # one frame to a peer; a peer that takes longer is cut off
LAST_WORD_TIMEOUT = 2.0  # our Error frame after a protocol violation
RECEIVE_SIZE = 256 * 1024
RECEIVE_BUFFER = 4 * 1024 * 1024  # read ahead of the node by at most this much
# Bytes handed to the node per call (one thread hop, one fsync per partial, one catalog
# commit): a new thumbnail waits for one call, a few milliseconds at this size.
RECEIVE_BATCH = 1024 * 1024
TICK_MAX = 0.5  # seconds between timer checks even when the node asks for none
BACKOFF_START = 0.5
BACKOFF_MAX = 15.0
STABLE_LINK_S = 10.0  # a link that lived this long resets the dial backoff
PULL_BYTES = 64 * 1024  # per worker-thread call: small frames up to, and then, one chunk
IMPORT_AHEAD = 1  # files copied while the one before them is made durable


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_host: str = "127.0.0.1") -> Address:
        """``HOST:PORT``, ``:PORT`` or ``[v6]:PORT``; raises ValueError with a usable message."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{text!r} is not HOST:PORT (for example 192.168.1.20:7447)")
        host = host.strip("[]") or default_host
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class PeerLink:
    """A live, authenticated connection to one peer and the scope that runs its pumps."""

    peer_id: str
    stream: tls.PeerStream
    initiated_locally: bool
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    bytes_in: int = 0
    bytes_out: int = 0
    since: float = field(default_factory=time.time)
    reason: str = "connection closed"
    violated: bool = False  # the peer broke the protocol: flush our Error, then close
    next_send_at: float = 0.0  # trio clock; pacing under ``rate_limit``


@dataclass(frozen=True, slots=True)
class InboundTransfer:
    """How far an original (or smaller copy) on its way to us has come, for progress bars.

    Not ``protocol.store.Incoming``, which names what kind of stream a partial belongs to."""

    peer: str
    image_id: str
    purpose: str
    done: int
    total: int


class Runtime:
    """One device: its card, node, TLS server, dialers, timers and event listeners."""

    def __init__(
        self,
        *,
        card_path: Path,
        card: Card,
        identity: Identity,
        config: NodeConfig,
        listen: Address,
        static_peers: Iterable[Address] = (),
        rate_limit: float | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        keys_for_desks: bool = False,
    ) -> None:
        """``keys_for_desks``: wrap each of our pictures' keys for the mesh's desks (those
        paired as desks), so that a desk can open what this device dispersed if it is lost."""
        self.card_path = card_path
        self.card = card
        self.identity = identity
        self.keys_for_desks = keys_for_desks
        if config.sealer is None:  # picture keys: unwrapped with this device's exchange key
            config = dataclasses.replace(
                config, sealer=Sealing(identity.exchange_private_key())
            )
        self.config = config
        self.listen = listen
        self.static_peers = list(static_peers)
        self.rate_limit = rate_limit  # bytes per second per peer, None for unlimited
        self.clock = clock
        self.node = Node(card, config, random.Random(seed))
        self.links: dict[str, PeerLink] = {}
        self.incoming: dict[tuple[str, str, str], InboundTransfer] = {}
        self.port: int | None = None
        self._lock = trio.Lock()
        self._changed = trio.Event()
        self._listeners: list[Callable[[ev.NodeEvent], None]] = []
        self._capture_listeners: list[Callable[[str], None]] = []
        self._nursery: trio.Nursery | None = None
        self.started_at = clock()
        self.ftp: FtpDoor | None = None  # the FTP door for cameras, while mesh.ftp serves one

    # --- the one door into the node --------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` (a node or card method) in a worker thread, alone, then dispatch events."""
        return await self._call(fn, args, kwargs, wake=True)

    async def _call(
        self, fn: Callable[..., T], args: Sequence[Any], kwargs: dict[str, Any], *, wake: bool
    ) -> T:
        def run() -> tuple[T | None, BaseException | None, list[ev.NodeEvent]]:
            # Events are drained even when the call raised: a protocol violation is one.
            try:
                return fn(*args, **kwargs), None, self.node.events()
            except Exception as exc:
                return None, exc, self.node.events()

        async with self._lock:
            result, error, events = await trio.to_thread.run_sync(run)
        for event in events:
            self._dispatch(event)
        if wake:
            # Anything may have queued frames: wake every idle writer to pull again.
            # A writer's own pull does not wake the others, or idle writers would spin.
            self._changed.set()
            self._changed = trio.Event()
        if error is not None:
            raise error
        return result  # type: ignore[return-value]

    def now(self) -> float:
        return self.clock()

    def membership(self) -> Membership:
        return load_membership(self.card_path)

    def subscribe(self, listener: Callable[[ev.NodeEvent], None]) -> Callable[[], None]:
        """Call ``listener`` on the trio thread for every node event; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def subscribe_captures(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(image_id)`` on the trio thread for every picture captured here
        (imported, watched, uploaded by FTP), once the node knows of it; returns an
        unsubscribe.  The node has no event for its own captures: the desk needs one."""
        self._capture_listeners.append(listener)
        return lambda: self._capture_listeners.remove(listener)

    def _dispatch(self, event: ev.NodeEvent) -> None:
        self._track(event)
        if isinstance(event, ev.PeerTimedOut):
            link = self.links.get(event.peer)
            if link is not None:
                link.reason = f"silent for {event.silent_s:.0f} s"
                link.scope.cancel()
        for listener in list(self._listeners):
            listener(event)

    def _track(self, event: ev.NodeEvent) -> None:
        """Keep incoming progress for the status view; log every event but the chattiest."""
        if isinstance(event, ev.TransferProgress):
            key = (event.peer, event.image_id, str(event.purpose))
            if key not in self.incoming:
                # The first chunk of a stream says where it started: a resumed transfer
                # shows an offset past zero here (the partial the card kept).
                log_event(event, name="TransferStarted")
            self.incoming[key] = InboundTransfer(
                event.peer, event.image_id, str(event.purpose), event.done, event.total
            )
            return
        if isinstance(event, ev.ReadOutChunk):
            return
        if isinstance(event, ev.OriginalArrived | ev.TransferRefused):
            self.incoming.pop((event.peer, event.image_id, str(event.purpose)), None)
        elif isinstance(
            event, ev.HeldStored | ev.Collected | ev.ReadOutDone | ev.ReadOutFailed
        ):
            # Streams that end in these (held copies, collections, relayed read-outs) send
            # no OriginalArrived: without this they would show at 100 % for ever.
            for key in [k for k in self.incoming if k[1] == event.image_id]:
                del self.incoming[key]
        elif isinstance(event, ev.PeerGone):
            for key in [k for k in self.incoming if k[0] == event.peer]:
                del self.incoming[key]
        log_event(event)

    # --- local inputs that are not one node call ----------------------------------------

    async def set_high_water(self, fraction: float) -> None:
        """Disperse above, and collect up to, ``fraction`` of the card from now on.

        Raises the config's error (a CammeshError) for a fraction outside (0, 1].
        """

        def change() -> None:
            # Inside a call: the node never sees a config change halfway through one of its own.
            config = dataclasses.replace(self.config, high_water=fraction)
            self.config = config
            self.node.config = config

        await self.call(change)


    async def import_pictures(
        self,
        paths: Sequence[Path],
        *,
        progress: ImportProgress | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> ImportSummary:
        """Import files onto the card, telling the node of each, in order, as it lands.

        Each file is copied, hashed and catalogued in a worker thread, outside the node
        lock (the card takes its own lock only around its catalog work, never across a
        copy), and is then announced with ``node.captured``: its thumbnail leaves while the
        next files are copied, and the node serves peers (handshakes, requests, chunks) all
        along.  The next file's copy starts while one is still being made durable (its
        fsyncs wait on the disk, the copy and hash on the processor), ``IMPORT_AHEAD`` files
        ahead at most; each is announced after the one before it.  Durable before announced:
        the original is fsynced and its catalog row committed (full sync) before
        ``node.captured``, so no peer ever holds the thumbnail of a picture this card could
        lose to a crash.  ``progress(done, total, outcome)`` is awaited after each file, before
        a further one starts; ``metadata`` is laid over each file's own (an FTP account's
        photographer).
        """
        todo = await trio.to_thread.run_sync(
            lambda: list(files_under(paths, card=self.card.path))
        )
        outcomes: list[Imported | Skipped] = []
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:

            def start(path: Path, refusal: str | None) -> trio.MemoryReceiveChannel[Any]:
                send, receive = trio.open_memory_channel[Any](1)

                async def copy() -> None:
                    job = functools.partial(
                        import_one, self.card, path, refusal, now=self.now(), metadata=metadata
                    )
                    try:
                        result: Any = await trio.to_thread.run_sync(job)
                    except Exception as exc:  # raised below, in order, bare
                        result = exc
                    send.send_nowait(result)

                nursery.start_soon(copy)
                return receive

            try:
                copying = [start(*item) for item in todo[: 1 + IMPORT_AHEAD]]
                for done, _ in enumerate(todo, start=1):
                    outcome = await copying.pop(0).receive()
                    if isinstance(outcome, Exception):
                        raise outcome
                    await self._imported(outcome)
                    if progress is not None:
                        await progress(done, len(todo), outcome)
                    if done + IMPORT_AHEAD < len(todo):
                        copying.append(start(*todo[done + IMPORT_AHEAD]))
                    outcomes.append(outcome)
            except Exception as exc:  # raised bare, as before, not in the nursery's group
                failure = exc
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return ImportSummary.of(outcomes)

    async def _imported(self, outcome: Imported | Skipped) -> None:
        """Announce one imported file to the node (or log why it was not imported)."""
        if isinstance(outcome, Imported):
            # Logged before the node hears of it, so a delay measured from this line
            # (bench/field.py) includes the node's own work.
            log.info(
                "captured %s from %s",
                short_id_of(outcome.image_id),
                outcome.path,
                extra={"event": "Captured",
                       "fields": {"image_id": outcome.image_id, "path": outcome.path}},
            )
            await self.call(self.node.captured, outcome.image_id, self.now())
            for listener in list(self._capture_listeners):
                listener(outcome.image_id)
        elif outcome.image_id is None:
            log.warning("could not import %s: %s", outcome.path, outcome.reason)

    # --- running ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve, dial and tick until cancelled; ``task_status.started`` gets the port."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listeners = await nursery.start(
                lambda task_status: tls.serve(
                    self.identity,
                    self.membership,
                    self._accepted,
                    host=self.listen.host,
                    port=self.listen.port,
                    task_status=task_status,
                )
            )
            self.port = tls.listening_port(listeners)
            log.info(
                "%s (%s) listening on %s:%d",
                self.config.name,
                self.identity.short_id,
                self.listen.host,
                self.port,
                extra={"event": "Listening", "fields": {"port": self.port,
                                                        "device_id": self.identity.device_id}},
            )
            nursery.start_soon(self._timers)
            for address in self.static_peers:
                nursery.start_soon(self.dial_forever, address, None)
            task_status.started(self.port)

    def start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._nursery is not None, "the runtime is not running"
        self._nursery.start_soon(fn, *args)

    async def _timers(self) -> None:
        while True:
            deadline = await self._call(self.node.next_deadline, (), {}, wake=False)
            delay = TICK_MAX if deadline is None else deadline - self.now()
            await trio.sleep(min(max(delay, 0.0), TICK_MAX))
            await self.call(self.node.tick, self.now())

    # --- connections -----------------------------------------------------------------

    def connected_to(self, peer_id: str) -> bool:
        return peer_id in self.links

    async def dial_forever(self, address: Address, expect: str | None) -> None:
        """Keep a connection to ``address`` up, with backoff; returns only when cancelled.

        Without ``expect`` (a ``--peer``), the device found there on the first connection
        is expected from then on, so a link it opened to us is not dialled twice.
        """
        backoff = BACKOFF_START
        while True:
            if expect is not None and self.connected_to(expect):
                await trio.sleep(1.0)
                continue
            try:
                stream = await tls.connect(
                    self.identity, self.membership, address.host, address.port, expect=expect
                )
            except (TransportError, NotPaired, PeerIdentityMismatch, PairingError) as exc:
                log.info("dial %s: %s; retrying in about %.1f s", address, exc, backoff)
                await trio.sleep(backoff * (0.75 + 0.5 * random.random()))
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            expect = stream.peer_id
            started = trio.current_time()
            await self._run_link(stream, initiated_locally=True)
            if trio.current_time() - started > STABLE_LINK_S:
                backoff = BACKOFF_START
            await trio.sleep(backoff * (0.75 + 0.5 * random.random()))
            backoff = min(BACKOFF_MAX, backoff * 2)

    async def dial_once(self, address: Address, expect: str) -> None:
        """One connection to ``expect`` at ``address``, run until it ends; a failure is logged."""
        try:
            stream = await tls.connect(
                self.identity, self.membership, address.host, address.port, expect=expect
            )
        except (TransportError, NotPaired, PeerIdentityMismatch, PairingError) as exc:
            log.info("dial %s: %s", address, exc)
            return
        await self._run_link(stream, initiated_locally=True)

    def _key_recipient(self, stream: tls.PeerStream) -> bytes | None:
        """The peer's exchange key if our pictures' keys go to it: a desk, paired as one."""
        if not self.keys_for_desks or stream.peer.role is not Role.DESK:
            return None
        cert = x509.load_pem_x509_certificate(stream.peer.cert_pem)
        key = exchange_public_key_of(cert.public_bytes(serialization.Encoding.DER))
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    async def _accepted(self, stream: tls.PeerStream) -> None:
        await self._run_link(stream, initiated_locally=False)

    async def _run_link(self, stream: tls.PeerStream, *, initiated_locally: bool) -> None:
        peer = stream.peer_id
        me = self.identity.device_id
        existing = self.links.get(peer)
        if existing is not None:
            # Both dialled at once: both sides keep the connection the smaller id began.
            if not tls.keep_connection(me, peer, initiated_locally=initiated_locally):
                await stream.aclose()
                return
            existing.reason = "replaced by a new connection"
            existing.scope.cancel()
            with trio.move_on_after(LAST_WORD_TIMEOUT + tls.CLOSE_TIMEOUT + 5):
                while peer in self.links:  # let the old link say goodbye to the node first
                    await trio.sleep(0.01)
            if peer in self.links:
                log.warning("the old link to %s would not close; dropping the new one",
                            short_id_of(peer))
                await stream.aclose()
                return
        link = PeerLink(peer, stream, initiated_locally)
        self.links[peer] = link
        try:
            if stream.peer_members:
                try:
                    await trio.to_thread.run_sync(
                        learn_members, self.card_path, self.identity, stream.peer_members
                    )
                except CammeshError as exc:  # the link is still good; only the news is lost
                    log.warning("could not learn the members %s knows: %s", short_id_of(peer), exc)
            await self.call(
                self.node.connected, peer, self.now(), key_recipient=self._key_recipient(stream)
            )
            with link.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, self._reader)
                    nursery.start_soon(self._pump, link, self._writer)
        finally:
            with trio.CancelScope(shield=True):
                if link.violated:
                    await self._last_word(link)
                if self.links.get(peer) is link:
                    del self.links[peer]
                await self.call(self.node.disconnected, peer, self.now(), link.reason)
                await stream.aclose()  # bounded by tls.CLOSE_TIMEOUT

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
                    await self.call(self._receive, link.peer_id, batch)
                except RemoteProtocolError:
                    link.violated = True  # before any checkpoint: the writer must see it
                    raise

    async def _writer(self, link: PeerLink) -> None:
        while True:
            if self.rate_limit:
                # Pace like a slow Wi-Fi link would, but decide what to send only once
                # the slot has come, so a new thumbnail is not stuck behind a chosen chunk.
                await trio.sleep_until(link.next_send_at)
            await link.stream.wait_send_all_might_not_block()
            changed = self._changed
            batch = await self._call(self._pull, (link.peer_id,), {}, wake=False)
            if link.violated:
                # The node's last word (an Error) is in this batch: send it, and stop.
                with trio.CancelScope(shield=True), trio.move_on_after(LAST_WORD_TIMEOUT):
                    await link.stream.send_all(batch)
                return
            if not batch:
                await changed.wait()
                continue
            if self.rate_limit:
                start = max(link.next_send_at, trio.current_time())
                link.next_send_at = start + len(batch) / self.rate_limit
            with trio.fail_after(SEND_TIMEOUT):
                await link.stream.send_all(batch)
            link.bytes_out += len(batch)

    def _receive(self, peer_id: str, data: bytes) -> None:
        """Feed the node what a peer sent; the chunks in it become durable together, before
        the call returns and so before any frame it queued (an acknowledgement, a Stored)
        can leave (Card.batched_partials)."""
        with self.card.batched_partials():
            self.node.receive_data(peer_id, data, self.now())

    def _pull(self, peer_id: str) -> bytes:
        """The next frames for one peer, in one worker-thread call: small ones up to
        ``PULL_BYTES``, or one chunk; b"" when there is nothing to send.

        Thumbnails and control frames are small; taking a few per thread hop saves hops on
        a loaded machine, while at most one chunk is decided ahead of a new thumbnail.
        """
        frames: list[bytes] = []
        size = 0
        budget = PULL_BYTES if not self.rate_limit else 1  # paced: one frame per slot
        while size < budget:
            frame = self.node.next_frame(peer_id, self.now())
            if frame is None:
                break
            frames.append(frame)
            size += len(frame)
        return b"".join(frames)

    async def _last_word(self, link: PeerLink) -> None:
        """After a protocol violation the node has one Error frame for the peer: try to send it."""
        try:
            frame = await self._call(self.node.next_frame, (link.peer_id, self.now()), {}, wake=False)
            if frame:
                with trio.move_on_after(LAST_WORD_TIMEOUT):
                    await link.stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass  # the peer is gone already; the log has the reason

    # --- read-out for local users -----------------------------------------------------

    async def read_out(
        self,
        image_id: str,
        sink: Callable[[int, bytes], None],
        *,
        wait_s: float | None = None,
        on_pending: Callable[[str], Awaitable[None]] | None = None,
    ) -> str:
        """Read a picture's original out through the node, wherever it is; returns its digest.

        ``sink(offset, data)`` receives the bytes in order.  Without ``wait_s`` a holder that
        is away fails it at once; with it the node retries until ``wait_s`` has passed,
        and ``on_pending(reason)`` hears each time it is still waiting.  Raises
        ``ReadOutError`` naming why it failed.
        """
        send, receive = trio.open_memory_channel[ev.NodeEvent](math.inf)
        wanted = ev.ReadOutChunk | ev.ReadOutDone | ev.ReadOutFailed | ev.ReadOutPending

        def listener(event: ev.NodeEvent) -> None:
            if isinstance(event, wanted) and event.image_id == image_id:
                send.send_nowait(event)

        unsubscribe = self.subscribe(listener)
        try:
            await self.call(self.node.read_out, image_id, self.now(), wait_s=wait_s)
            async with receive:
                async for event in receive:
                    if isinstance(event, ev.ReadOutChunk):
                        sink(event.offset, event.data)
                    elif isinstance(event, ev.ReadOutDone):
                        return event.digest
                    elif isinstance(event, ev.ReadOutPending):
                        if on_pending is not None:
                            await on_pending(event.reason)
                    else:
                        assert isinstance(event, ev.ReadOutFailed)
                        raise ReadOutError(event.reason)
        finally:
            unsubscribe()
        raise ReadOutError("the read-out ended without an answer")


def event_fields(event: ev.NodeEvent) -> dict[str, Any]:
    """An event's fields as JSON values (ids in full, bytes as their length)."""
    out: dict[str, Any] = {}
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if isinstance(value, bytes | bytearray):
            value = len(value)
        elif hasattr(value, "device_id") and hasattr(value, "name"):  # a Hello
            value = {"name": value.name, "role": str(value.role)}
        elif not isinstance(value, str | int | float | bool | type(None) | tuple | list):
            value = str(value)
        out[name] = value
    return out


def _shortened(value: object) -> object:
    """Device and image ids in their short human form; anything else, even a peer's
    64-character text that merely looks like an id, as it is."""
    if isinstance(value, str) and len(value) == 64:
        try:
            return short_id_of(value)
        except ValueError:  # not hex: some other text of that length
            return value
    return value


def log_event(event: ev.NodeEvent, *, name: str | None = None) -> None:
    """One log line per node event: short ids for people, every field for ``--log-json``."""
    name = name or type(event).__name__
    fields = event_fields(event)
    shown = " ".join(f"{k}={_shortened(v)}" for k, v in fields.items())
    log.info("%s %s", name, shown, extra={"event": name, "fields": fields})
