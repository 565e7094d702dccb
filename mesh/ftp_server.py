"""The FTP server cameras upload into, run in a process of its own (mesh/ftp.py starts it).

pyftpdlib's server is a pure-Python select loop: every 16 KiB TLS record is a turn of it.
Beside the node's trio loop and import threads in one process it fought them for the GIL
(each waited for the other's switch interval) and halved both, so it runs in a child
process; it never opens the card.  It asks the node for the card's free room when an
upload starts (and every ``REFRESH_BYTES``), moves a completed upload out of the camera's
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
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from mesh.errors import MeshError
from mesh.ftp_accounts import ACCOUNTS_FILE, Account, load_accounts
from protocol.store import StoreError
from storage.completeness import complete

if TYPE_CHECKING:
    from mesh.runtime import Address

log = logging.getLogger("cammesh.ftp")

PERMS = "elradfmw"  # CWD, LIST/SIZE, RETR, APPE, DELE/RMD, RNFR/RNTO, MKD, STOR
POLL_S = 0.05  # how often the FTP thread looks up from its select loop to see if it must stop
REFRESH_BYTES = 8 * 1024 * 1024  # of one upload, between two looks at the card's free room
READY = "ready"  # under the uploads folder: completed uploads waiting for their import
FTP_PATH = ".ftp-path"  # beside a file in ready/: where in its account the camera put it
DONE_REMEMBERED = 1000  # per account: finished uploads whose SIZE is still answered


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


class OutOfRoom(Exception):
    """The card cannot take what this upload has brought so far."""


class Room:
    """The card's free room, less what uploads under way (or waiting for their import) need.

    The FTP thread asks for the card's free room when an upload starts (ALLO, STOR) and
    every ``REFRESH_BYTES`` of an upload (``read_free``: a question to the node, which
    answers from its card); the node gives room back once it imported a file.
    Between an import's commit and that, the file counts twice: a moment of caution."""

    def __init__(self, read_free: Callable[[], int]) -> None:
        self._lock = threading.Lock()
        self._read_free = read_free
        self.free = 0
        self.pending = 0  # bytes of uploads received or under way, not yet on the card

    def refresh(self) -> None:
        try:
            free = self._read_free()
        except StoreError:
            return  # the card is closing: the node is stopping, uploads are cut anyway
        with self._lock:
            self.free = free

    def take(self, size: int, *, what: str) -> None:
        with self._lock:
            if self.pending + size > self.free:
                raise OutOfRoom(
                    f"the card has no room for {what}: "
                    f"{max(0, self.free - self.pending)} bytes free"
                )
            self.pending += size

    def give_back(self, size: int) -> None:
        with self._lock:
            self.pending = max(0, self.pending - size)



@dataclass
class CameraStats:
    """What ``cammesh status`` and the desk show of one FTP account."""

    account: str
    photographer: str | None
    frames: int = 0
    last_frame: str | None = None
    last_frame_at: float | None = None
    uploading: dict[str, int] = field(default_factory=dict)  # ftp path -> bytes so far
    done: deque[tuple[str, int]] = field(default_factory=lambda: deque(maxlen=DONE_REMEMBERED))

    def view(self) -> dict[str, Any]:
        return {"account": self.account, "photographer": self.photographer,
                "frames": self.frames, "last_frame": self.last_frame,
                "last_frame_at": self.last_frame_at,
                "uploading": [{"name": n, "bytes": b} for n, b in sorted(self.uploading.items())]}


@dataclass(frozen=True, slots=True)
class Completed:
    """An upload whose STOR completed, moved to ``path`` under ready/, for the node to import."""

    account: str
    path: Path
    ftp_path: str
    size: int
    at: float
    photographer: str | None = None


class Logins:
    """Wrong passwords per address: after ``max_failures`` within the window, a lockout."""

    def __init__(self, settings: FtpSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def locked_for(self, address: str) -> float:
        """Seconds ``address`` must still wait before it may try a password (0: it may)."""
        failures = self._failures.get(address)
        if not failures:
            return 0.0
        now = self.clock()
        while failures and now - failures[0] > max(self.settings.failure_window,
                                                   self.settings.lockout):
            failures.popleft()
        if len(failures) < self.settings.max_failures:
            return 0.0
        return max(0.0, failures[-1] + self.settings.lockout - now)

    def failed(self, address: str) -> None:
        self._failures.setdefault(address, deque(maxlen=self.settings.max_failures)).append(
            self.clock())

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


class Accounts:
    """The pyftpdlib authorizer: the card's accounts, re-read when ``cammesh ftp`` changed them."""

    def __init__(self, card: Path, homes: Path, logins: Logins) -> None:
        self.card = card
        self.homes = homes
        self.logins = logins
        self._stamp: float | None = None
        self._accounts: dict[str, Account] = {}
        self._verified: dict[str, tuple[str, str]] = {}  # user -> (hash, password) last good
        self.stats: dict[str, CameraStats] = {}
        self.lock = threading.Lock()  # over ``stats``: the server's thread and the node's pipe
        self.reload()

    def reload(self) -> None:
        try:
            stamp = (self.card / ACCOUNTS_FILE).stat().st_mtime
        except FileNotFoundError:
            stamp = 0.0
        if stamp == self._stamp:
            return
        self._accounts = load_accounts(self.card)
        self._stamp = stamp
        with self.lock:
            for user, account in self._accounts.items():
                stats = self.stats.setdefault(user, CameraStats(user, account.photographer))
                stats.photographer = account.photographer
            for gone in set(self.stats) - set(self._accounts):
                del self.stats[gone]

    def account(self, user: str) -> Account | None:
        return self._accounts.get(user)

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        address = handler.remote_ip
        wait = self.logins.locked_for(address)
        if wait:
            raise AuthenticationFailed(
                f"too many wrong passwords from {address}; try again in {wait:.0f} s")
        self.reload()
        account = self._accounts.get(username)
        if account is None:
            self.logins.failed(address)
            if username.lower() in ("anonymous", "ftp"):
                raise AuthenticationFailed("anonymous login is refused; use the camera's account")
            raise AuthenticationFailed("wrong user name or password")
        # A camera may log in for every frame: a repeat of the last good password skips scrypt.
        if self._verified.get(username) != (account.hash, password):
            if not account.verify(password):
                self.logins.failed(address)
                raise AuthenticationFailed("wrong user name or password")
            self._verified[username] = (account.hash, password)
        self.logins.succeeded(address)

    def get_home_dir(self, username: str) -> str:
        home = self.homes / username
        home.mkdir(parents=True, exist_ok=True)
        return str(home)

    def has_user(self, username: str) -> bool:
        return username in self._accounts

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        if perm not in PERMS or username not in self._accounts:
            return False
        if path is None:
            return True
        home = os.path.realpath(self.homes / username)
        real = os.path.realpath(path)
        return real == home or real.startswith(home + os.sep)

    def get_perms(self, username: str) -> str:
        return PERMS if username in self._accounts else ""

    def get_msg_login(self, username: str) -> str:
        return f"Welcome, {username}: each file you store becomes a picture of the mesh."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


class _GuardedFile:
    """An upload's file: each write first takes its room on the card (OutOfRoom if none)."""

    def __init__(self, file: Any, room: Room, what: str) -> None:
        self._file = file
        self._room = room
        self._what = what
        self.taken = 0

    def write(self, data: bytes) -> int:
        if self.taken // REFRESH_BYTES != (self.taken + len(data)) // REFRESH_BYTES:
            self._room.refresh()  # the card's room may have changed under a long upload
        self._room.take(len(data), what=self._what)
        self.taken += len(data)
        return int(self._file.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class _DataChannel(TLS_DTPHandler):  # type: ignore[misc]
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
        file = super().open(filename, mode)
        if any(c in mode for c in "wa+"):
            handler = self.cmd_channel
            guarded = _GuardedFile(file, handler.door.room, os.path.basename(filename))
            handler.current = guarded
            return guarded
        return file


class _Control(TLS_FTPHandler):  # type: ignore[misc]
    """One camera's control connection; ``door`` (set on the class) is the CameraServer."""

    door: CameraServer
    dtp_handler = _DataChannel
    abstracted_fs = _Folder

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allocated = 0
        self.refused = False
        self.current: _GuardedFile | None = None

    def ftp_ALLO(self, line: str) -> None:
        size = line.split()[0] if line.split() else ""
        if not size.isdigit():
            self.respond("501 ALLO needs a size in bytes.")
            return
        self.door.room.refresh()
        if int(size) > self.door.room.free - self.door.room.pending:
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
        if need > room.free - room.pending:
            self._restart_position = 0
            self.respond(f"552 The card has no room for {os.path.basename(file)} "
                         f"({max(0, room.free - room.pending)} bytes free); nothing was stored.")
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
        taken = self._finish(file)
        ftp_path = self.fs.fs2ftp(file)
        size = os.path.getsize(file)
        # The room stays taken until the node has imported it (or given up on it).
        self.door.room.give_back(taken - size)
        self.door.hand_over(self.username, Path(file), ftp_path, size)

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
    completed upload (from the server's thread), ``imported`` is the node's answer."""

    def __init__(self, settings: FtpSettings, card: Path, cert: Path, key: Path, *,
                 free_room: Callable[[], int], deliver: Callable[[Completed], None]) -> None:
        self.settings = settings
        self.uploads = settings.uploads
        self.ready = settings.uploads / READY
        self.ready.mkdir(parents=True, exist_ok=True)
        self.room = Room(free_room)
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

    def hand_over(self, account: str, file: Path, ftp_path: str, size: int) -> None:
        """Move a completed upload out of the camera's folder, and tell the node."""
        folder = self.ready / f"{next(self._sequence):015d}-{account}"
        folder.mkdir()
        target = folder / file.name
        # Kept for a restart: the folder is half of what pairs a RAW with its JPEG.
        (folder / FTP_PATH).write_text(ftp_path, encoding="utf-8", errors="surrogateescape")
        os.replace(file, target)
        known = self.accounts.account(account)
        self._deliver(Completed(account, target, ftp_path, size, time.time(),
                                known.photographer if known is not None else None))

    def imported(self, item: Completed, *, ok: bool, pending: bool = True) -> None:
        """The node imported ``item`` (or gave up on it for now): its room is the card's."""
        if pending:
            self.room.give_back(item.size)
        if not ok:
            return
        with self.accounts.lock:
            stats = self.accounts.stats.get(item.account)
            if stats is not None:
                stats.frames += 1
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


# --- the child process ------------------------------------------------------------------------

ROOM_WAIT_S = 5.0  # for the node's answer on the card's free room; the last one stands after


def child_main(conn: Any, settings: FtpSettings, card: Path, cert: Path, key: Path,
               json_logs: bool) -> None:
    """The FTP process: serve until the node says stop or is gone (its pipe closes).

    To the node: ("listening", port) or ("error", why) first, then ("completed", Completed),
    ("room?",) and ("status", cameras); from it: ("room", free), ("imported", Completed, ok,
    pending) and ("stop",)."""
    _child_logging(json_logs)
    lock = threading.Lock()
    answers: queue.Queue[int] = queue.Queue()

    def send(message: tuple[Any, ...]) -> None:
        with lock, contextlib.suppress(OSError):  # the node is gone: its pipe ends us soon
            conn.send(message)

    def free_room() -> int:
        while not answers.empty():
            answers.get_nowait()  # a late answer to an earlier question
        send(("room?",))
        try:
            return answers.get(timeout=ROOM_WAIT_S)
        except queue.Empty:
            raise StoreError("the node did not say how much room its card has") from None

    try:
        server = CameraServer(settings, card, cert, key, free_room=free_room,
                              deliver=lambda item: send(("completed", item)))
    except MeshError as exc:
        send(("error", str(exc)))
        return
    server.on_change = lambda: send(("status", server.status()))
    send(("listening", server.port))
    send(("status", server.status()))

    def listen() -> None:
        try:
            while True:
                message = conn.recv()
                if message[0] == "room":
                    answers.put(message[1])
                elif message[0] == "imported":
                    server.imported(message[1], ok=message[2], pending=message[3])
                    server.on_change()
                elif message[0] == "stop":
                    break
        except (EOFError, OSError):
            pass  # the node is gone
        server.stop()

    threading.Thread(target=listen, name="cammesh-ftp-node", daemon=True).start()
    server.serve()


def _child_logging(json_logs: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler = logging.StreamHandler()  # the node's stderr: the same log
    if json_logs:
        from mesh.json_logs import JsonLogFormatter

        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
