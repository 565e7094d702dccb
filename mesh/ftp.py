"""``--ftp [HOST:]PORT``: cameras upload each frame from their own FTP/FTPS client into the node.

The FTP server (mesh/ftp_server.py) runs in a child process, so that its pure-Python loop
and the node's import threads and trio loop do not take turns at one GIL.  This is the
node's side: the child, the pipe to it, and the imports.  Each completed upload comes up the
pipe, is imported here as one capture (``Runtime.import_pictures``: durable, then
announced) with the account's photographer and its RAW+JPEG pair key in its metadata, and
the child hears it was, with the card's room after it, which frees the room the upload
held.  The child asks for the card's free room as uploads go (and does not wait for the
answer in a burst); a thread here answers from the card itself (the card is safe from any
thread), without the node's lock or a trip through trio.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import posixpath
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from mesh.errors import MeshError
from mesh.ftp_accounts import load_accounts
from mesh.ftp_child import child_main
from mesh.ftp_server import FTP_PATH, READY, Completed, FtpSettings
from protocol.store import StoreError
from storage.pairs import PAIR_KEY, pair_key

if TYPE_CHECKING:
    from mesh.identity import Identity
    from mesh.runtime import Runtime

__all__ = ["FtpDoor", "FtpSettings", "serve_ftp"]

log = logging.getLogger("cammesh.ftp")

START_TIMEOUT = 60.0  # for the child to listen (it imports pyftpdlib and OpenSSL first)
STOP_TIMEOUT = 10.0
IMPORTS_AT_ONCE = 2
# Peers' background originals wait while a camera uploads, and this long after the last
# upload ended: a burst's next STOR follows its 226 within milliseconds.
HOLD_AFTER_UPLOAD_S = 0.5


class FtpDoor:
    """The node's FTP door: the server's process, what it last said of its cameras, and the
    completed uploads it handed over (``completed``, a trio channel)."""

    def __init__(self, settings: FtpSettings, card: Path, identity: Identity,
                 free_room: Callable[[], int]) -> None:
        """Start the child and wait until it listens (MeshError if it cannot); blocking."""
        self.settings = settings
        self.ready = settings.uploads / READY
        self.card = card
        self._free_room = free_room
        context = multiprocessing.get_context("spawn")  # no fork of a threaded trio process
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=child_main, name="cammesh-ftp", daemon=True,
            args=(child, settings, card, identity.cert_path, identity.key_path, _json_logs()))
        self._process.start()
        child.close()
        self._lock = threading.Lock()  # over the pipe's sending end and ``_cameras``
        # Over a room figure and its sending: a figure read before an import's commit goes
        # down the pipe before that import's "imported", never after it (the child would
        # count the file's room as free again).
        self._room_lock = threading.Lock()
        self._cameras: list[dict[str, Any]] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._send, self.completed = trio.open_memory_channel[Completed](float("inf"))
        self.uploading = False  # some camera's upload is under way (on the trio thread)
        self.uploading_changed = trio.Event()  # set, and replaced, when ``uploading`` changes
        self._uploading_said = False  # the last ``uploading`` sent to trio (door thread)
        self._thread: threading.Thread | None = None
        self._stopping = False
        if not self._conn.poll(START_TIMEOUT):
            self._end()
            raise MeshError(f"the FTP server did not start within {START_TIMEOUT:g} s")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            kind, value = "error", "the FTP server's process ended as it started"
        if kind != "listening":
            self._end()
            raise MeshError(str(value))
        self.port: int = value

    def start(self) -> None:
        """From trio: start following what the child says."""
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._follow, name="cammesh-ftp-door",
                                        daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._say_uploading(False)  # an upload cut by the child's end holds nothing
                if not self._stopping:
                    self._process.join(1.0)
                    log.error("the FTP server's process ended (exit code %s): cameras cannot "
                              "upload until the node is restarted", self._process.exitcode)
                return
            kind = message[0]
            if kind == "completed":
                assert self._token is not None
                # When the node is stopping, ready/ keeps it for the next start.
                with contextlib.suppress(trio.RunFinishedError):
                    self._token.run_sync_soon(self._send.send_nowait, message[1])
            elif kind == "room?":
                with self._room_lock:
                    try:
                        free = self._free_room()
                    except StoreError:
                        continue  # the card is closing; the child keeps what it knew
                    self._say(("room", free))
            elif kind == "status":
                with self._lock:
                    self._cameras = message[1]
                self._say_uploading(any(camera["uploading"] for camera in message[1]))

    def _say_uploading(self, uploading: bool) -> None:
        if uploading != self._uploading_said:
            self._uploading_said = uploading
            assert self._token is not None
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._set_uploading, uploading)

    def _set_uploading(self, uploading: bool) -> None:
        self.uploading = uploading
        self.uploading_changed.set()
        self.uploading_changed = trio.Event()

    def _say(self, message: tuple[Any, ...]) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._conn.send(message)

    def imported(self, item: Completed, *, ok: bool, pending: bool = True) -> None:
        """Tell the child: ``item`` is on the card (``ok``) or stays in ready/ for now, and
        the card's free room after it; blocking (it reads the card)."""
        with self._room_lock:
            try:
                free: int | None = self._free_room()
            except StoreError:
                free = None  # the card is closing
            self._say(("imported", item, ok, pending, free))

    def status(self) -> list[dict[str, Any]]:
        """Each camera account: photographer, frames, last frame, uploads under way."""
        with self._lock:
            return list(self._cameras)

    def stop(self) -> None:
        """Stop the child (uploads under way are cut) and wait for it; blocking."""
        self._stopping = True
        self._say(("stop",))
        self._end()
        if self._thread is not None:
            self._thread.join()
        self._conn.close()

    def _end(self) -> None:
        self._process.join(STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def leftovers(self) -> list[Completed]:
        """Completed uploads a previous run handed over but did not import."""
        accounts = load_accounts(self.card)
        found = []
        for folder in sorted(self.ready.iterdir()):
            account = folder.name.partition("-")[2]
            known = accounts.get(account)
            try:
                ftp_path: str | None = (folder / FTP_PATH).read_text(
                    encoding="utf-8", errors="surrogateescape")
            except OSError:
                ftp_path = None
            for file in folder.iterdir():
                if file.name != FTP_PATH:
                    found.append(Completed(account, file, ftp_path or "/" + file.name,
                                           file.stat().st_size, file.stat().st_mtime,
                                           known.photographer if known else None))
        return found


def _json_logs() -> bool:
    from mesh.json_logs import JsonLogFormatter

    return any(isinstance(h.formatter, JsonLogFormatter) for h in logging.getLogger().handlers)


async def serve_ftp(
    runtime: Runtime, settings: FtpSettings, *,
    task_status: trio.TaskStatus[FtpDoor] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the FTP door until cancelled; ``task_status.started`` gets it (its ``port``)."""
    card = runtime.card
    door = await trio.to_thread.run_sync(FtpDoor, settings, runtime.card_path, runtime.identity,
                                         lambda: card.usage().free)
    door.start()
    runtime.ftp = door
    log.info("FTP for cameras on %s port %d%s", settings.listen.host, door.port,
             " (FTPS required)" if settings.require_tls else " (FTPS offered)",
             extra={"event": "FtpListening", "fields": {"port": door.port}})
    try:
        for item in await trio.to_thread.run_sync(door.leftovers):
            await _import(runtime, door, item, pending=False)
        task_status.started(door)
        async with trio.open_nursery() as nursery:
            # Two at once: one file's fsync and commit overlap the next one's copy and hash.
            for _ in range(IMPORTS_AT_ONCE):
                nursery.start_soon(_import_each, runtime, door)
            nursery.start_soon(_hold_background, runtime, door)
    finally:
        runtime.ftp = None
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(door.stop)


async def _hold_background(runtime: Runtime, door: FtpDoor) -> None:
    """Hold peers' background originals (Node.hold_background) while a camera uploads and
    for ``HOLD_AFTER_UPLOAD_S`` after: a peer mirroring every original took the processor
    the upload and its import need (the send and the peer's TLS receive; on two cores a
    burst's upload rate fell to 0.55 of a bare server's, its thumbnails' p99 to 960 ms,
    bench/ftp_ingest.py --desk-policy all).  Requested originals and dispersal go on."""
    held = False
    while True:
        if door.uploading != held:
            if held:  # the last upload ended: let go only if no other starts soon
                with trio.move_on_after(HOLD_AFTER_UPLOAD_S):
                    await door.uploading_changed.wait()
                    continue
            held = not held
            await runtime.call(runtime.node.hold_background, held)
            log.info("peers' background originals %s", "held: a camera uploads" if held
                     else "go on", extra={"event": "BackgroundHeld", "fields": {"held": held}})
        else:
            await door.uploading_changed.wait()


async def _import_each(runtime: Runtime, door: FtpDoor) -> None:
    async for item in door.completed:
        await _import(runtime, door, item)


async def _import(runtime: Runtime, door: FtpDoor, item: Completed, *, pending: bool = True
                  ) -> None:
    metadata: dict[str, str | int | float | bool | None] = {"ftp_account": item.account}
    # RAW+JPEG: the same account, the same folder, the same stem (storage/pairs.py).
    key = pair_key(f"ftp:{item.account}", posixpath.dirname(item.ftp_path), item.path.name)
    if key is not None:
        metadata[PAIR_KEY] = key
    if item.photographer:
        metadata["photographer"] = item.photographer
    ok = False
    try:
        # ready/ is the card's to take: linked in, not copied, when on its filesystem.
        summary = await runtime.import_pictures(
            [item.path], metadata=metadata, adopt=True,
            digests={item.path: item.sha256} if item.sha256 else None)
        ok = not summary.rejected
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(functools.partial(door.imported, item, ok=ok,
                                                            pending=pending))
    if not ok:
        # Kept in ready/: the next start tries again. The camera was told 226 already.
        log.error("FTP upload %s from %s not imported: %s; it stays in %s", item.ftp_path,
                  item.account, summary.rejected[0].reason, item.path)
        return
    await trio.to_thread.run_sync(shutil.rmtree, item.path.parent)
