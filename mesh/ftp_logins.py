"""Who may log in to a node's FTP door, and what it tells of each camera (mesh/ftp_server.py).

The card's accounts (mesh/ftp_accounts.py) as pyftpdlib's authorizer: anonymous login
refused, wrong passwords rate-limited per address, each account confined to its own
upload folder; and each account's frames, last frame and uploads under way, for
``cammesh status`` and the desk.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyftpdlib.authorizers import AuthenticationFailed

from mesh.ftp_accounts import ACCOUNTS_FILE, Account, load_accounts

if TYPE_CHECKING:
    from mesh.ftp_server import FtpSettings

PERMS = "elradfmw"  # CWD, LIST/SIZE, RETR, APPE, DELE/RMD, RNFR/RNTO, MKD, STOR
DONE_REMEMBERED = 1000  # per account: finished uploads whose SIZE is still answered


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
