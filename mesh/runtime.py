"""The trio runtime of one device: a thin pump between sockets and the sans-IO node.

Read bytes -> feed the node -> drain its events -> write what it returns
(STYLE.md rule 6).  The node and the card it stores through are called one
call at a time, from a worker thread, so a disk read never stalls the trio
loop; ``call`` is the only way in.  Here: the card's imports, the dialers and
the TLS server, the timers, read-outs for local users.  Each live link's
reader and writer are mesh/pumps.py's; the log line of each event is
mesh/event_log.py's.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh import tls
from mesh.errors import NotPaired, PairingError, PeerIdentityMismatch, ReadOutError, TransportError
from mesh.event_log import InboundTransfer, note_event
from mesh.identity import Identity, exchange_public_key_of, short_id_of
from mesh.membership import Membership, learn_members, load_membership
from mesh.pumps import LAST_WORD_TIMEOUT, PeerLink, Pumps
from mesh.transport import Address as Address  # re-exported: where callers find it
from mesh.transport import LinkStream, Transport
from protocol import events as ev
from protocol.config import NodeConfig
from protocol.errors import CammeshError
from protocol.messages import MetadataValue, Role
from protocol.node import Node
from protocol.outcomes import Failed
from storage.card import Card
from storage.importer import Imported, ImportSummary, Skipped, files_under, import_one
from storage.sealing import Sealing

if TYPE_CHECKING:
    from mesh.ftp import FtpDoor

log = logging.getLogger("cammesh.node")

T = TypeVar("T")
ImportProgress = Callable[[int, int, "Imported | Skipped"], Awaitable[None]]

TICK_MAX = 0.5  # seconds between timer checks even when the node asks for none
BACKOFF_START = 0.5
BACKOFF_MAX = 15.0
STABLE_LINK_S = 10.0  # a link that lived this long resets the dial backoff
IMPORT_AHEAD = 1  # files copied while the one before them is made durable


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
        transport: Transport | None = None,
    ) -> None:
        """``keys_for_desks``: wrap each of our pictures' keys for the mesh's desks (those
        paired as desks), so that a desk can open what this device dispersed if it is lost.
        ``transport``: how links are made (mesh/transport.py); TLS on ``listen`` unless said."""
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
        self.transport: Transport = transport or tls.TlsTransport(
            identity, self.membership, host=listen.host, port=listen.port
        )
        self.static_peers = list(static_peers)
        self.rate_limit = rate_limit  # bytes per second per peer, None for unlimited
        self.clock = clock
        self.node = Node(card, config, random.Random(seed))
        self.links: dict[str, PeerLink] = {}
        self.incoming: dict[tuple[str, str, str], InboundTransfer] = {}
        self.port: int | None = None
        self._lock = trio.Lock()
        self._pumps = Pumps(self)
        self._listeners: list[Callable[[ev.NodeEvent], None]] = []
        self._capture_listeners: list[Callable[[str], None]] = []
        self._nursery: trio.Nursery | None = None
        self.started_at = clock()
        self.ftp: FtpDoor | None = None  # the FTP door for cameras, while mesh.ftp serves one

    # --- the one door into the node --------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` (a node or card method) in a worker thread, alone, then dispatch events."""
        return await self._call(fn, args, kwargs, wake=True)

    async def call_quietly(self, fn: Callable[..., T], *args: Any) -> T:
        """As ``call``, without waking the writers: for a writer's own pull and the timer's
        look at the deadline, which queue nothing for other peers."""
        return await self._call(fn, args, {}, wake=False)

    async def _call(
        self, fn: Callable[..., T], args: Sequence[Any], kwargs: dict[str, Any], *, wake: bool
    ) -> T:
        Outcome = tuple[T | None, BaseException | None, list[ev.NodeEvent], list[str]]

        def run() -> Outcome:
            # Events are drained even when the call raised: a protocol violation is one.
            # The peers with frames to send are read in the same hop, as sim/ reads them.
            try:
                result, error = fn(*args, **kwargs), None
            except Exception as exc:
                result, error = None, exc
            return result, error, self.node.events(), self.node.sending_peers() if wake else []

        async with self._lock:
            result, error, events, sending = await trio.to_thread.run_sync(run)
        for event in events:
            self._dispatch(event)
        if sending:
            self._pumps.wake(sending)
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
        note_event(self.incoming, event)
        if isinstance(event, ev.PeerTimedOut):
            link = self.links.get(event.peer)
            if link is not None:
                link.reason = f"silent for {event.silent_s:.0f} s"
                link.scope.cancel()
        for listener in list(self._listeners):
            listener(event)

    # --- local inputs that are not one node call ----------------------------------------

    async def set_high_water(self, fraction: float) -> None:
        """Disperse above, and collect up to, ``fraction`` of the card from now on.

        Raises the config's error (a CammeshError) for a fraction outside (0, 1].
        """

        def change() -> None:
            # Inside a call: the node never sees a config change halfway through one of its own.
            config = dataclasses.replace(self.config, high_water=fraction)
            self.config = config
            self.node.config = config  # every machine hears it (Node.config's setter)

        await self.call(change)


    async def import_pictures(
        self,
        paths: Sequence[Path],
        *,
        progress: ImportProgress | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        adopt: bool = False,
        digests: Mapping[Path, str] | None = None,
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
        photographer); ``adopt``: the files are the card's to take, linked in, not copied
        (``Card.add_original``: FTP uploads handed over), ``digests`` the SHA-256 of those
        hashed as they arrived.
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
                        import_one, self.card, path, refusal, now=self.now(), metadata=metadata,
                        adopt=adopt, digest=(digests or {}).get(path),
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
            self.port = await nursery.start(self.transport.serve, self._accepted)
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
            deadline = await self.call_quietly(self.node.next_deadline)
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
                stream = await self.transport.connect(address, expect=expect)
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
            stream = await self.transport.connect(address, expect=expect)
        except (TransportError, NotPaired, PeerIdentityMismatch, PairingError) as exc:
            log.info("dial %s: %s", address, exc)
            return
        await self._run_link(stream, initiated_locally=True)

    def _key_recipient(self, stream: LinkStream) -> bytes | None:
        """The peer's exchange key if our pictures' keys go to it: a desk, paired as one."""
        if not self.keys_for_desks or stream.peer.role is not Role.DESK:
            return None
        cert = x509.load_pem_x509_certificate(stream.peer.cert_pem)
        key = exchange_public_key_of(cert.public_bytes(serialization.Encoding.DER))
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    async def _accepted(self, stream: LinkStream) -> None:
        await self._run_link(stream, initiated_locally=False)

    async def _run_link(self, stream: LinkStream, *, initiated_locally: bool) -> None:
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
            await self._pumps.run(link)
        finally:
            with trio.CancelScope(shield=True):
                if link.violated:
                    await self._pumps.last_word(link)
                if self.links.get(peer) is link:
                    del self.links[peer]
                await self.call(self.node.disconnected, peer, self.now(), link.reason)
                await stream.aclose()  # bounded by tls.CLOSE_TIMEOUT

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

        unsubscribe = self.subscribe(listener)  # the bytes come as events, from this call on
        try:
            outcome = await self.call(self.node.read_out, image_id, self.now(), wait_s=wait_s)
            if isinstance(outcome, Failed):  # said by the call: no event need be waited for
                raise ReadOutError(outcome.reason)
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
