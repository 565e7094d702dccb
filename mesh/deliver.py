"""Delivery onward: each picture the editor tags (or rates highly enough) goes to the agency.

``Deliverer`` runs beside a desk node.  It watches the marks; a picture the rule admits is
queued once in the delivery journal (storage/delivery_journal.py), its original read out of
the mesh into a spool folder (wherever it is: here, on its camera, with a holder), made into
a resized JPEG copy carrying its caption in XMP when asked, and uploaded to ``NAME.part`` on
the server, then renamed to ``NAME``: the agency's ingest never sees half a picture.  An
original goes byte for byte with a ``.xmp`` sidecar instead.

Failures (a dropped link, a server down, a refused login) are retried with exponential
backoff; an upload cut short resumes from the bytes the server already has (FTP REST+STOR,
else APPE; SFTP writes at the offset).  The journal makes each (picture, server) delivery
happen once: after a restart a finished one is never sent again, and one that was renamed
just before a crash is recognised on the server by name and size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from mesh.deliver_servers import DeliveryError, Target, open_session, put_small
from mesh.errors import MeshError
from mesh.runtime import Runtime
from protocol.errors import CammeshError
from storage.delivery_journal import Delivery, DeliveryJournal, DeliveryState
from storage.export import split_name
from storage.marks import Marks

log = logging.getLogger("cammesh.deliver")

SPOOL = "delivery-spool"
JOURNAL_EVERY = 1 << 20  # bytes between progress records in the journal
SHOWN = 200  # queue rows the page gets
STOP_WAIT_S = 35.0  # longest wait for an upload thread to notice the desk stopping


@dataclass(frozen=True, slots=True)
class Rule:
    """Which pictures go: every tagged one, and with ``rating`` those rated that or more."""

    rating: int | None = None

    def admits(self, marks: Marks) -> bool:
        rated = self.rating is not None and marks.rating is not None and marks.rating >= self.rating
        return marks.tagged or rated

    def describe(self) -> str:
        return "tagged" + ("" if self.rating is None else f" or rated {self.rating}+")


@dataclass(frozen=True, slots=True)
class Copy:
    """What is sent: the original (``long_edge`` None) or a JPEG of that long edge."""

    long_edge: int | None = None
    quality: int = 85

    def describe(self) -> str:
        return ("originals with XMP sidecars" if self.long_edge is None
                else f"JPEG copies, {self.long_edge} px long edge, quality {self.quality}")


class Stopped(MeshError):
    """The desk is stopping: the upload under way stops at the next block."""


class Deliverer:
    """Deliveries of one desk to one target, run with ``nursery.start(deliverer.run)``."""

    def __init__(self, runtime: Runtime, target: Target, *, rule: Rule = Rule(),
                 copy: Copy = Copy(), poll_s: float = 1.0, rate_limit: float | None = None,
                 backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.runtime = runtime
        self.target = target
        self.rule = rule
        self.copy = copy
        self.poll_s = poll_s
        self.rate_limit = rate_limit  # bytes per second, for tests and thin uplinks
        self.backoff = backoff
        self.journal = DeliveryJournal.beside(runtime.card_path)
        self.spool = runtime.card_path / SPOOL / hashlib.sha256(target.key.encode()).hexdigest()[:16]
        self.active: dict[str, Any] | None = None  # the upload under way, for the page
        self.last_error: str | None = None
        self.attempts: list[tuple[str, int]] = []  # (image id, offset it started from)
        self._known: set[str] = set()
        self._wake = trio.Event()
        self._stop = threading.Event()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        key = self.target.key
        self._known = {d.image_id for d in await trio.to_thread.run_sync(self.journal.entries, key)}
        log.info("delivering %s to %s (%s)", self.rule.describe(), key, self.copy.describe())
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_marks)
                await self._send_due()
        finally:
            self._stop.set()
            self.journal.close()

    async def _watch_marks(self) -> None:
        """Queue what the rule admits, every ``poll_s``, also while an upload is under way."""
        while True:
            await self._queue_new()
            await trio.sleep(self.poll_s)

    async def _send_due(self) -> None:
        """Deliver what is due, one at a time, oldest first; then wait for more."""
        key = self.target.key
        while True:
            while (due := await trio.to_thread.run_sync(self.journal.due, key, time.time())):
                await self._deliver(due)
            soonest = await trio.to_thread.run_sync(self.journal.next_due_at, key)
            wait = self.poll_s if soonest is None else min(self.poll_s, soonest - time.time())
            with trio.move_on_after(max(0.05, wait)):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _queue_new(self) -> None:
        rt = self.runtime
        marks: dict[str, Marks] = await rt.call(_all_marks, rt.card)
        fresh = [i for i, m in marks.items() if i not in self._known and self.rule.admits(m)]
        for image_id in fresh:
            record = await rt.call(rt.card.image, image_id)
            if record is None:
                continue
            stem, ext = split_name(record.name)
            name = stem + (".jpg" if self.copy.long_edge is not None else ext)
            await trio.to_thread.run_sync(
                self.journal.queue, image_id, self.target.key, name, time.time())
            self._known.add(image_id)
            self._wake.set()

    async def _deliver(self, delivery: Delivery) -> None:
        image_id = delivery.image_id
        rt = self.runtime
        marks = (await rt.call(_all_marks, rt.card)).get(image_id, Marks())
        if not self.rule.admits(marks) and await trio.to_thread.run_sync(
                self.journal.withdraw, image_id, self.target.key):
            self._known.discard(image_id)  # untagged before it went: tagged again, it goes
            log.info("%s was untagged before its delivery began; not sent", image_id[:12])
            return
        try:
            source, sidecar = await self._prepare(image_id)
            self.active = {"image_id": image_id, "sent": delivery.sent,
                           "size": source.stat().st_size}
            await self._in_thread(lambda: self._upload(delivery, source, sidecar))
        except Exception as exc:
            if not isinstance(exc, CammeshError | OSError):
                log.exception("delivery of %s failed unexpectedly", image_id[:12])
            reason = str(exc) or type(exc).__name__
            delay = min(self.backoff[1], self.backoff[0] * 2 ** min(delivery.attempts, 16))
            log.warning("delivery of %s to %s failed (retrying in %g s): %s",
                        image_id[:12], self.target.key, delay, reason)
            self.last_error = reason
            await trio.to_thread.run_sync(lambda: self.journal.failed(
                image_id, self.target.key, reason, retry_at=time.time() + delay))
            return
        finally:
            self.active = None
        await trio.to_thread.run_sync(self.journal.delivered, image_id, self.target.key, time.time())
        self.last_error = None
        for leftover in self.spool.glob(f"{image_id}.*"):
            leftover.unlink(missing_ok=True)
        log.info("delivered %s to %s", image_id[:12], self.target.key)

    async def _in_thread(self, work: Callable[[], None]) -> None:
        """Run ``work`` in a worker thread; when cancelled, stop it at its next block and
        wait for it, so that nothing touches the journal after the desk closed it."""
        finished = threading.Event()

        def run() -> None:
            try:
                work()
            finally:
                finished.set()

        try:
            await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        except trio.Cancelled:
            self._stop.set()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(STOP_WAIT_S):
                    while not finished.is_set():
                        await trio.sleep(0.02)
            raise

    # --- preparing the file -----------------------------------------------------------------

    async def _prepare(self, image_id: str) -> tuple[Path, bytes | None]:
        """The file to send (spooled once, so a resumed upload sends the same bytes) and,
        for an original, its sidecar."""
        from storage.smaller import smaller_jpeg
        from storage.xmp import xmp_packet

        rt = self.runtime
        marks = (await rt.call(_all_marks, rt.card)).get(image_id, Marks())
        labels = await rt.call(rt.card.color_labels)
        packet = xmp_packet(marks, labels)
        original = self.spool / f"{image_id}.original"
        if self.copy.long_edge is None:
            if not original.exists():
                await self._read_out(image_id, original)
            return original, packet
        copy = self.spool / f"{image_id}.jpg"
        if not copy.exists():
            if not original.exists():
                await self._read_out(image_id, original)
            record = await rt.call(rt.card.image, image_id)
            name = record.name if record is not None else image_id[:12]
            data = await trio.to_thread.run_sync(lambda: smaller_jpeg(
                original, name, self.copy.long_edge, self.copy.quality, xmp=packet))
            _write_atomically(copy, data)
        return copy, None

    async def _read_out(self, image_id: str, path: Path) -> None:
        """The original, from wherever in the mesh it is, verified, into ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        hasher = hashlib.sha256()
        with open(part, "wb") as out:

            def sink(offset: int, data: bytes) -> None:
                out.seek(offset)
                out.write(data)
                hasher.update(data)

            with trio.fail_after(600):
                await self.runtime.read_out(image_id, sink)
        if hasher.hexdigest() != image_id:
            part.unlink(missing_ok=True)
            raise DeliveryError("the original read out does not hash to its id")
        part.replace(path)

    # --- the upload (in a worker thread) ----------------------------------------------------

    def _upload(self, delivery: Delivery, source: Path, sidecar: bytes | None) -> None:
        target, key, remote = self.target, self.target.key, delivery.remote_name
        size = source.stat().st_size
        session = open_session(target)
        try:
            there = session.size(remote)
            if there is not None:
                if delivery.state is DeliveryState.SENDING and there == size:
                    return  # renamed into place just before the desk stopped
                raise DeliveryError(f"a file {remote!r} that is not this picture is already "
                                    "on the server; move it away there")
            part = remote + ".part"
            have = session.size(part) or 0
            if have > size:
                session.remove(part)
                have = 0
            self.journal.sending(delivery.image_id, key, size=size, sent=have)
            self.attempts.append((delivery.image_id, have))
            if have < size:
                with open(source, "rb") as data:
                    session.write(part, data, have, self._progress(delivery.image_id, size, have))
            landed = session.size(part)
            if landed != size:
                raise DeliveryError(f"the server has {landed} of {size} bytes of {remote!r}")
            if sidecar is not None:
                put_small(session, split_name(remote)[0] + ".xmp", sidecar)
            session.rename(part, remote)
        finally:
            session.close()

    def _progress(self, image_id: str, size: int, start: int) -> Callable[[int], None]:
        began, recorded = time.monotonic(), start

        def progress(done: int) -> None:
            nonlocal recorded
            if self._stop.is_set():
                raise Stopped("the desk is stopping")
            self.active = {"image_id": image_id, "sent": done, "size": size}
            if done - recorded >= JOURNAL_EVERY:
                self.journal.sending(image_id, self.target.key, size=size, sent=done)
                recorded = done
            if self.rate_limit:
                ahead = (done - start) / self.rate_limit - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)

        return progress

    async def route(self, method: str, path: str, query: dict[str, str], receive: Any,
                    send: Any) -> bool:
        """The desk page's ``GET /api/deliveries`` (mesh/desk_static/deliver.js); a route for
        ``Desk.routes``, answering True when the request was its own."""
        if (method, path) != ("GET", "/api/deliveries"):
            return False
        body = json.dumps(await trio.to_thread.run_sync(self.status_json)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
        return True

    # --- for the page -----------------------------------------------------------------------

    def status_json(self) -> dict[str, Any]:
        """The queue as the desk page shows it: newest first, with each one's reason."""
        now = time.time()
        entries = self.journal.entries(self.target.key)
        waiting = [e for e in entries if e.state is not DeliveryState.DELIVERED]
        done = [e for e in entries if e.state is DeliveryState.DELIVERED]
        active = self.active
        rows = []
        for entry in (waiting + done[::-1])[:SHOWN]:
            row = {
                "image_id": entry.image_id, "name": entry.remote_name, "state": entry.state.value,
                "size": entry.size, "sent": entry.sent, "attempts": entry.attempts,
                "error": entry.error, "delivered_at": entry.delivered_at,
                "retry_in": (None if entry.state is DeliveryState.DELIVERED or entry.attempts == 0
                             else max(0.0, round(entry.next_try_at - now, 1))),
            }
            if active is not None and active["image_id"] == entry.image_id:
                row.update(state="uploading", sent=active["sent"], size=active["size"])
            rows.append(row)
        return {
            "target": self.target.key, "rule": self.rule.describe(), "copy": self.copy.describe(),
            "queued": len(waiting), "delivered": len(done), "error": self.last_error,
            "entries": rows,
        }


def _all_marks(card: Any) -> dict[str, Marks]:
    return dict(card.all_marks())


def _write_atomically(path: Path, data: bytes) -> None:
    part = path.with_suffix(".part")
    part.write_bytes(data)
    part.replace(path)

