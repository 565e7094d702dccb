"""Where deliveries go: the agency's server named by a URL, and one blocking session with it.

``ftp://USER@HOST[:PORT]/PATH`` (plain FTP), ``ftps://...`` (explicit FTPS: AUTH TLS on the
control connection, then PROT P for data) and ``sftp://...`` (SSH, through asyncssh from the
``sftp`` extra).  The password (and a CA file, known-hosts file or client key) come from a
credentials file, never the command line, where every user of the machine could read it:

    # agency.toml (chmod 600)
    password = "..."
    user = "..."            # optional: the URL's user otherwise
    ca_file = "ca.pem"      # optional, FTPS: trust this CA instead of the system's
    known_hosts = "known"   # optional, SFTP: instead of ~/.ssh/known_hosts
    client_key = "id_key"   # optional, SFTP: log in with this key

A session's methods block (ftplib, or asyncssh on a private event loop): the deliverer runs
each attempt in a worker thread.  Every failure is a ``DeliveryError`` whose message says
what the server or the network did, for the desk page.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import io
import os
import socket
import ssl
import stat
import tomllib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from mesh.errors import MeshError

DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}
TIMEOUT = 30.0  # seconds any one exchange with the server may take
BLOCK = 64 * 1024

Progress = Callable[[int], None]  # told the bytes on the server after each block


class DeliveryError(MeshError):
    """One attempt to deliver failed; the message is the server's or the network's reason."""


@dataclass(frozen=True, slots=True)
class Target:
    """An agency server and the folder on it, with what the credentials file gave."""

    scheme: str
    host: str
    port: int
    user: str
    folder: str
    password: str | None = None
    ca_file: Path | None = None
    known_hosts: Path | None = None
    client_key: Path | None = None

    @property
    def key(self) -> str:
        """The target as the journal and the page name it: the URL without any secret."""
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_target(url: str, credentials: Path | None) -> Target:
    """The target ``url`` names, with the secrets from ``credentials``; MeshError when wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise MeshError(f"deliver to ftp://, ftps:// or sftp://, not {url!r}")
    if parts.password is not None:
        raise MeshError("never put the password in the URL (every user can read a command "
                        "line): put it in the file --deliver-credentials names")
    if not parts.hostname:
        raise MeshError(f"the delivery URL {url!r} names no server")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise MeshError(f"the delivery URL's port is wrong: {exc}") from exc
    secrets = read_credentials(credentials) if credentials is not None else {}
    user = secrets.get("user") or unquote(parts.username or "")
    if not user:
        raise MeshError("name the account: ftp://USER@HOST/PATH (or user = in the credentials)")
    if scheme != "sftp" and not secrets.get("password"):
        raise MeshError("FTP needs a password: give --deliver-credentials FILE with password = ...")

    def path(name: str) -> Path | None:
        value = secrets.get(name)
        if value is None:
            return None
        found = Path(str(value)).expanduser()
        return found if found.is_absolute() or credentials is None else credentials.parent / found

    return Target(scheme, parts.hostname, port, user, unquote(parts.path).strip("/"),
                  password=secrets.get("password"), ca_file=path("ca_file"),
                  known_hosts=path("known_hosts"), client_key=path("client_key"))


def read_credentials(path: Path) -> dict[str, str]:
    """The credentials file's fields; refused when others may read it, like ssh does."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MeshError(f"{path} may be read by other users: chmod 600 {path}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MeshError(f"{path} is not a credentials file (TOML, e.g. password = \"...\"): {exc}") from exc
    known = {"user", "password", "ca_file", "known_hosts", "client_key"}
    unknown = set(values) - known
    if unknown or not all(isinstance(v, str) for v in values.values()):
        raise MeshError(f"{path}: only text fields {', '.join(sorted(known))} belong there")
    return dict(values)


class Session(Protocol):
    """One logged-in connection to the target's folder."""

    def size(self, name: str) -> int | None: ...
    def write(self, name: str, source: BinaryIO, offset: int, progress: Progress) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def remove(self, name: str) -> None: ...
    def close(self) -> None: ...


def open_session(target: Target) -> Session:
    """Connect and log in (DeliveryError saying why not)."""
    if target.scheme == "sftp":
        return SftpSession(target)
    return FtpSession(target)


def put_small(session: Session, name: str, data: bytes) -> None:
    """Write a small file (a sidecar) whole under ``name``, through a temporary name."""
    part = name + ".part"
    session.write(part, io.BytesIO(data), 0, lambda done: None)
    if session.size(name) is not None:  # ours, from an attempt cut short after its rename
        session.remove(name)
    session.rename(part, name)


# --- FTP and FTPS ---------------------------------------------------------------------------


class FtpSession:
    def __init__(self, target: Target) -> None:
        self.target = target
        try:
            if target.scheme == "ftps":
                context = ssl.create_default_context(
                    cafile=None if target.ca_file is None else str(target.ca_file))
                self.ftp: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=TIMEOUT)
            else:
                self.ftp = ftplib.FTP(timeout=TIMEOUT)
            self.ftp.connect(target.host, target.port)
            self.ftp.login(target.user, target.password or "")  # FTP_TLS: AUTH TLS first
            if isinstance(self.ftp, ftplib.FTP_TLS):
                self.ftp.prot_p()
            self.ftp.voidcmd("TYPE I")
            for part in PurePosixPath(target.folder).parts if target.folder else ():
                with _ftp_reason(f"the folder {target.folder!r}"):
                    try:
                        self.ftp.cwd(part)
                    except ftplib.error_perm:
                        self.ftp.mkd(part)
                        self.ftp.cwd(part)
        except (OSError, ftplib.Error, EOFError) as exc:
            self.close()
            raise DeliveryError(_reason(exc, target)) from exc

    def size(self, name: str) -> int | None:
        with _ftp_reason(name, self.target):
            try:
                return self.ftp.size(name)
            except ftplib.error_perm:  # 550: no such file
                return None

    def write(self, name: str, source: BinaryIO, offset: int, progress: Progress) -> None:
        done = offset

        def sent(block: bytes) -> None:
            nonlocal done
            done += len(block)
            progress(done)

        source.seek(offset)
        with _ftp_reason(name, self.target):
            if offset == 0:
                self.ftp.storbinary(f"STOR {name}", source, BLOCK, sent)
                return
            try:
                self.ftp.storbinary(f"STOR {name}", source, BLOCK, sent, rest=offset)
            except ftplib.error_perm as exc:  # no REST for uploads here: append instead
                if not str(exc).startswith(("500", "501", "502", "504")):
                    raise
                source.seek(offset)
                self.ftp.storbinary(f"APPE {name}", source, BLOCK, sent)

    def rename(self, old: str, new: str) -> None:
        with _ftp_reason(new, self.target):
            self.ftp.rename(old, new)

    def remove(self, name: str) -> None:
        with _ftp_reason(name, self.target):
            self.ftp.delete(name)

    def close(self) -> None:
        # No QUIT: after an upload cut short the server may take its time to answer it.
        with contextlib.suppress(OSError, AttributeError):
            self.ftp.close()


@contextlib.contextmanager
def _ftp_reason(what: str, target: Target | None = None) -> Any:
    try:
        yield
    except (OSError, ftplib.Error, EOFError) as exc:
        raise DeliveryError(f"{what}: {_reason(exc, target)}") from exc


# --- SFTP -----------------------------------------------------------------------------------


class SftpSession:
    """SFTP through asyncssh, on an event loop of its own in the calling (worker) thread."""

    def __init__(self, target: Target) -> None:
        try:
            import asyncssh
        except ImportError as exc:
            raise DeliveryError("sftp:// needs asyncssh: pip install 'cammesh[sftp]'") from exc
        self.asyncssh = asyncssh
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.conn: Any = None
        options: dict[str, Any] = {"username": target.user, "password": target.password}
        if target.known_hosts is not None:
            options["known_hosts"] = str(target.known_hosts)
        if target.client_key is not None:
            options["client_keys"] = [str(target.client_key)]
        try:
            self.conn = self._run(asyncssh.connect(target.host, target.port, **options))
            self.sftp = self._run(self.conn.start_sftp_client())
            if target.folder:
                self._run(self.sftp.makedirs(target.folder, exist_ok=True))
                self._run(self.sftp.chdir(target.folder))
        except BaseException:
            self.close()
            raise

    def _run(self, work: Coroutine[Any, Any, Any]) -> Any:
        try:
            return self.loop.run_until_complete(asyncio.wait_for(work, TIMEOUT))
        except (TimeoutError, OSError, self.asyncssh.Error) as exc:
            raise DeliveryError(_reason(exc, self.target)) from exc

    def size(self, name: str) -> int | None:
        try:
            return int(self._run(self.sftp.stat(name)).size)
        except DeliveryError as exc:
            if isinstance(exc.__cause__, self.asyncssh.SFTPNoSuchFile):
                return None
            raise

    def write(self, name: str, source: BinaryIO, offset: int, progress: Progress) -> None:
        flags = self.asyncssh.FXF_WRITE | self.asyncssh.FXF_CREAT  # never truncated: resumable
        handle = self._run(self.sftp.open(name, flags, encoding=None))
        try:
            source.seek(offset)
            while block := source.read(BLOCK):
                self._run(handle.write(block, offset))
                offset += len(block)
                progress(offset)
        finally:
            with contextlib.suppress(DeliveryError):
                self._run(handle.close())

    def rename(self, old: str, new: str) -> None:
        self._run(self.sftp.rename(old, new))  # SFTP v3 rename: fails, never replaces, if new exists

    def remove(self, name: str) -> None:
        self._run(self.sftp.remove(name))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait_for(self.conn.wait_closed(), 5))
            self.conn = None
        self.loop.close()


# --- reasons --------------------------------------------------------------------------------


def _reason(exc: BaseException, target: Target | None) -> str:
    """What happened, in the words an editor can act on."""
    where = f"{target.host}:{target.port}" if target else "the server"
    if isinstance(exc, ConnectionRefusedError):
        return f"nobody answers on {where} (connection refused): is the server up?"
    if isinstance(exc, socket.gaierror):
        return f"no such server {target.host if target else ''!r}: {exc.strerror}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | socket.timeout):
        return f"{where} did not answer in {TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return f"{where} closed the connection (in the middle of TLS)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc}"
    if isinstance(exc, ftplib.error_perm) and str(exc).startswith("530"):
        return f"the server refused the login: {exc}"
    if isinstance(exc, ftplib.Error):
        return f"the server refused: {exc}"
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError):
        return f"{where} closed the connection"
    name = type(exc).__name__
    if name in ("ConnectionLost", "DisconnectError"):
        return f"{where} closed the connection ({exc})"
    if name == "PermissionDenied":
        return f"the server refused the login: {exc}"
    if name == "HostKeyNotVerifiable":
        return f"the server's host key is not known: {exc} (add it to known_hosts)"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or exc}"
    return f"{where}: {exc}"


def file_size(source: BinaryIO) -> int:
    return os.fstat(source.fileno()).st_size
