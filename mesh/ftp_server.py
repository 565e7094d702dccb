"""The FTP server cameras upload into, run in a process of its own (mesh/ftp.py starts it).

pyftpdlib's server is a pure-Python select loop: every 16 KiB TLS record is a turn of it.
Beside the node's trio loop and import threads in one process it fought them for the GIL
(each waited for the other's switch interval) and halved both, so it runs in a child
process (mesh/ftp_child.py); it never opens the card.  It keeps the card's free room as
the node last told it (mesh/ftp_room.py), moves a completed upload out of the camera's
folder into ``ready/`` and tells the node, which imports it and says so back.

What a camera can do, and nothing more (issue 16): log in to its own account (explicit
FTPS, AUTH TLS, with the node's certificate; required with ``require_tls``), CWD/MKD
dated folders, LIST, SIZE, STOR, REST and APPE to resume, and RETR/DELE/RNFR of what is
in its folder, which is only ever its own unfinished uploads: a finished one leaves it.
A picture counts when its STOR completes: a transfer cut off (a reset, a stall past
``data_timeout``, ABOR, or a clean close before the file's end as its format tells it:
storage/completeness.py) stays in the folder for the camera to resume and is never
imported.  An upload that would not fit on the card is refused with 552 before its data is
lost, and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from mesh.errors import MeshError
from mesh.ftp_logins import Accounts, Logins
from mesh.ftp_room import GuardedFile, OutOfRoom, Room
from storage.completeness import complete

if TYPE_CHECKING:
    from mesh.runtime import Address

log = logging.getLogger("cammesh.ftp")

POLL_S = 0.05  # how often the FTP thread looks up from its select loop to see if it must stop
READY = "ready"  # under the uploads folder: completed uploads waiting for their import
WRITE_BUFFER = 256 * 1024  # an upload's file buffer
FTP_PATH = ".ftp-path"  # beside a file in ready/: where in its account the camera put it
# TLS records an upload's data channel reads per turn of the loop (16 KiB each), where
# pyftpdlib reads one: a turn (epoll, dispatch, the TLS wrapper's bookkeeping) per record
# was a fifth of the FTP process's processor time (py-spy, bench/ftp_ingest.py).
RECORDS_PER_TURN = 16


@dataclass(frozen=True, slots=True)
class FtpSettings:
    """How the FTP door of a node listens and what it allows; seconds for every wait."""

    listen: Address
    uploads: Path  # a folder outside the card: one sub-folder per account, and ready/
    require_tls: bool = False
    passive_ports: range | None = None
    data_timeout: float = 60.0  # a data connection this long without a byte is cut off
    idle_timeout: float = 600.0  # a logged-in control connection this long silent
    failed_login_delay: float = 1.0  # before answering a wrong password
    max_failures: int = 5  # wrong passwords from one address within ``failure_window`` ...
    failure_window: float = 300.0
    lockout: float = 300.0  # ... lock that address out this long


@dataclass(frozen=True, slots=True)
class Completed:
    """An upload whose STOR completed, moved to ``path`` under ready/, for the node to import."""

    account: str
    path: Path
    ftp_path: str
    size: int
    at: float
    photographer: str | None = None
    sha256: str | None = None  # hashed as it arrived (an upload sent whole, not resumed)


class _DataChannel(TLS_DTPHandler):  # type: ignore[misc]
    def handle_read_event(self) -> None:
        super().handle_read_event()  # the TLS handshake or shutdown, or one record
        if not self._ssl_established or self._ssl_accepting or self._ssl_closing:
            return
        # More records while the socket has them: a record that is not all here yet
        # (want-read) ends the turn, as does anything that closed the transfer.
        with self._handle_ssl_want_rw():
            for _ in range(RECORDS_PER_TURN - 1):
                if (self._closed or not self.receive or self.transfer_finished
                        or self._ssl_want_read or self._ssl_want_write):
                    break
                self.handle_read()

    def handle_error(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OutOfRoom) or isinstance(getattr(exc, "__cause__", None), OutOfRoom):
            self.transfer_finished = False
            self._resp = (f"552 {exc.__cause__ or exc}; transfer refused.", log.info)
            self.cmd_channel.refused = True
            self.close()
            return
        super().handle_error()

    def close(self) -> None:
        file = self.file_obj
        if (not self._closed and self.receive and self.transfer_finished and file is not None
                and not getattr(self, "checked", False)):
            self.checked = True  # a TLS channel closes twice: after its TLS shutdown too
            file.flush()
            if not _complete(Path(file.name)):
                # The connection closed before the picture's end: a cut, not a frame.
                self.transfer_finished = False
                self._resp = ("426 The file ends before its picture does; resume it with "
                              "REST or APPE.", log.info)
        super().close()


def _complete(path: Path) -> bool:
    try:
        return complete(path)
    except OSError:
        return False  # unreadable here: not a picture yet either


class _Folder(AbstractedFS):  # type: ignore[misc]
    def open(self, filename: str, mode: str) -> Any:
        if not any(c in mode for c in "wa+"):
            return super().open(filename, mode)
        # Written in large blocks, not one system call per 16 KiB TLS record.
        file = open(filename, mode, buffering=WRITE_BUFFER)  # noqa: SIM115  # closed by pyftpdlib
        handler = self.cmd_channel
        guarded = GuardedFile(file, handler.door.room, os.path.basename(filename),
                              hashed=mode == "wb")  # not APPE, nor REST (r+b)
        handler.current = guarded
        return guarded


class _Control(TLS_FTPHandler):  # type: ignore[misc]
    """One camera's control connection; ``door`` (set on the class) is the CameraServer."""

    door: CameraServer
    dtp_handler = _DataChannel
    abstracted_fs = _Folder

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allocated = 0
        self.refused = False
        self.current: GuardedFile | None = None

    def ftp_ALLO(self, line: str) -> None:
        size = line.split()[0] if line.split() else ""
        if not size.isdigit():
            self.respond("501 ALLO needs a size in bytes.")
            return
        self.door.room.refresh()
        if int(size) > self.door.room.left():
            self.respond("552 The card has no room for that; nothing was stored.")
            return
        self.allocated = int(size)
        self.respond("200 Room enough on the card.")

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        # Before any data: the whole file (what a resume keeps, and ALLO's size) must fit.
        kept = self._restart_position or (
            os.path.getsize(file) if "a" in mode and os.path.isfile(file) else 0)
        need = max(self.allocated, kept + 1)
        self.allocated = 0
        room = self.door.room
        room.refresh()
        if need > room.left():
            self._restart_position = 0
            self.respond(f"552 The card has no room for {os.path.basename(file)} "
                         f"({max(0, room.left())} bytes free); nothing was stored.")
            return None
        self.refused = False
        self.current = None
        started: str | None = super().ftp_STOR(file, mode)
        if started is not None and self.current is not None:
            try:
                room.take(kept, what=os.path.basename(file))
            except OutOfRoom:
                pass  # the first write will find out, and answer 552
            else:
                self.current.taken += kept
                self.current.written += kept
            with self.door.accounts.lock:
                stats = self.door.accounts.stats.get(self.username)
                if stats is not None:
                    stats.uploading[self.fs.fs2ftp(file)] = kept
            self.door.on_change()
        return started

    def _finish(self, file: str) -> int:
        """Forget the upload under way; returns the room it took."""
        with self.door.accounts.lock:
            stats = self.door.accounts.stats.get(self.username)
            if stats is not None:
                stats.uploading.pop(self.fs.fs2ftp(file), None)
        taken = self.current.taken if self.current is not None else 0
        self.current = None
        self.door.on_change()
        return taken

    def on_file_received(self, file: str) -> None:
        current = self.current
        taken = self._finish(file)
        ftp_path = self.fs.fs2ftp(file)
        size = os.path.getsize(file)
        # The room stays taken until the node has imported it (or given up on it).
        self.door.room.give_back(taken - size)
        whole = current is not None and current.written == size
        self.door.hand_over(self.username, Path(file), ftp_path, size,
                            current.sha256() if current is not None and whole else None)

    def on_incomplete_file_received(self, file: str) -> None:
        taken = self._finish(file)
        self.door.room.give_back(taken)
        if self.refused:  # 552: no half-upload stays behind
            with contextlib.suppress(OSError):
                os.unlink(file)
            log.info("upload of %s by %s refused: no room", self.fs.fs2ftp(file), self.username)
            return
        log.info("upload of %s by %s was cut off; kept for the camera to resume",
                 self.fs.fs2ftp(file), self.username)

    def ftp_SIZE(self, path: str) -> None:
        # A camera may check a frame's size after sending it; it has left the folder by then.
        if not os.path.isfile(path):
            ftp_path = self.fs.fs2ftp(path)
            with self.door.accounts.lock:
                stats = self.door.accounts.stats.get(self.username)
                done = dict(stats.done) if stats is not None else {}
            if ftp_path in done:
                self.respond(f"213 {done[ftp_path]}")
                return
        super().ftp_SIZE(path)


class CameraServer:
    """The FTP server of one node: ``serve`` until ``stop``; ``deliver`` hears of each
    completed upload (from the server's thread), ``imported`` is the node's answer;
    ``ask_room`` asks the node for the card's free room, answered into ``room.heard``."""

    def __init__(self, settings: FtpSettings, card: Path, cert: Path, key: Path, *,
                 ask_room: Callable[[], None], deliver: Callable[[Completed], None]) -> None:
        self.settings = settings
        self.uploads = settings.uploads
        self.ready = settings.uploads / READY
        self.ready.mkdir(parents=True, exist_ok=True)
        self.room = Room(ask_room)
        self.accounts = Accounts(card, self.uploads / "cameras", Logins(settings))
        self._deliver = deliver
        self.on_change: Callable[[], None] = lambda: None  # an upload started or ended
        self._sequence = itertools.count(int(time.time() * 1000))
        self._stop = threading.Event()
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate_file(str(cert))
        context.use_privatekey_file(str(key))
        handler = type("CameraControl", (_Control,), {
            "door": self,
            "ssl_context": context,
            "tls_control_required": settings.require_tls,
            "tls_data_required": settings.require_tls,
            "passive_ports": list(settings.passive_ports) if settings.passive_ports else None,
            "timeout": settings.idle_timeout,
            "auth_failed_timeout": settings.failed_login_delay,
            "authorizer": self.accounts,
            "banner": "cammesh FTP: cameras welcome.",
            "permit_foreign_addresses": False,
            "dtp_handler": type("CameraData", (_DataChannel,), {
                "timeout": settings.data_timeout}),
        })
        self._loop = IOLoop()
        host = settings.listen.host
        try:
            self.server = FTPServer((host, settings.listen.port), handler, ioloop=self._loop)
        except OSError as exc:
            self._loop.close()
            raise MeshError(f"cannot listen for FTP on {settings.listen}: {exc.strerror or exc}"
                            ) from exc
        self.port: int = self.server.address[1]

    def hand_over(self, account: str, file: Path, ftp_path: str, size: int,
                  sha256: str | None = None) -> None:
        """Move a completed upload out of the camera's folder, and tell the node."""
        folder = self.ready / f"{next(self._sequence):015d}-{account}"
        folder.mkdir()
        target = folder / file.name
        # Kept for a restart: the folder is half of what pairs a RAW with its JPEG.
        (folder / FTP_PATH).write_text(ftp_path, encoding="utf-8", errors="surrogateescape")
        os.replace(file, target)
        known = self.accounts.account(account)
        self._deliver(Completed(account, target, ftp_path, size, time.time(),
                                known.photographer if known is not None else None, sha256))

    def imported(self, item: Completed, *, ok: bool, pending: bool = True,
                 free: int | None = None) -> None:
        """The node imported ``item`` (or gave up on it for now): its room is the card's,
        which has ``free`` bytes free after it (None: not known)."""
        self.room.imported(item.size if pending else 0, free)
        if not ok:
            return
        with self.accounts.lock:
            stats = self.accounts.stats.get(item.account)
            if stats is not None:
                stats.frames += 1
                # Imports may finish out of order: the last frame is the last one uploaded.
                if stats.last_frame_at is None or item.at >= stats.last_frame_at:
                    stats.last_frame = item.ftp_path
                    stats.last_frame_at = item.at
                stats.done.append((item.ftp_path, item.size))

    def serve(self) -> None:
        """Serve until ``stop`` (sockets closed, uploads under way cut)."""
        try:
            # The loop itself, not server.serve_forever: that logs "starting FTP server" on
            # every call, which was a log line per poll, 20 a second even when idle.
            while not self._stop.is_set():
                self._loop.loop(POLL_S, blocking=False)
        except Exception:
            log.exception("the FTP server stopped on an unexpected error")
        finally:
            self.server.close_all()

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> list[dict[str, Any]]:
        with self.accounts.lock:
            return [stats.view() for _, stats in sorted(self.accounts.stats.items())]
