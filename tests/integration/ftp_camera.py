"""A camera node with an FTP door and a desk peer, both real `cammesh node` processes, and
the FTP clients that act as cameras (tests/integration/test_ftp*.py and bench/ftp_ingest.py)."""

from __future__ import annotations

import ftplib
import hashlib
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.desk_demo import DeviceSpec
from protocol.messages import Role
from tests.integration.devices import ProcessMesh, cammesh, free_port

DATED = "2026-12-07"


@dataclass
class FtpMesh:
    """``cam`` serves FTP on ``ftp_port``; ``desk`` is its paired peer over TLS."""

    mesh: ProcessMesh
    ftp_port: int
    passwords: dict[str, str]

    @property
    def cam(self) -> Any:
        return self.mesh["cam"].running

    @property
    def desk(self) -> Any:
        return self.mesh["desk"].running

    def stop(self) -> None:
        self.mesh.stop_all()


def add_account(card: Path, user: str, photographer: str | None = None) -> str:
    """``cammesh ftp add``, as a user runs it; returns the password it printed once."""
    extra = ["--photographer", photographer] if photographer else []
    result = cammesh("ftp", "add", card, user, *extra)
    assert result.returncode == 0, result.stderr
    found = re.search(r"^\s+(\S+)\s*$", result.stdout, re.MULTILINE)
    assert found is not None, result.stdout
    return found[1]


def start_ftp_mesh(folder: Path, *, cam_capacity: int = 2 * 1024**3,
                   accounts: dict[str, str | None] | None = None,
                   ftp_args: tuple[str, ...] = (), host: str = "[::]", desk: bool = True,
                   desk_args: tuple[str, ...] = ()) -> FtpMesh:
    """Create, pair and start a camera (with ``--ftp``) and a desk (a `cammesh node` with
    ``desk_args``); wait for their link."""
    ftp_port = free_port()
    specs = [DeviceSpec("cam", Role.CAMERA, cam_capacity)]
    mesh = ProcessMesh.create(folder, [*specs, DeviceSpec("desk", Role.DESK)] if desk else specs)
    cam = mesh["cam"]
    passwords = {user: add_account(cam.card, user, who)
                 for user, who in (accounts or {"nikon": "Ana Lopez"}).items()}
    cam.args = ["--ftp", f"{host}:{ftp_port}", *ftp_args]
    if desk:
        mesh["desk"].args = list(desk_args)
    mesh.start_all()
    mesh.wait_connected()
    return FtpMesh(mesh, ftp_port, passwords)


def camera(port: int, user: str, password: str, *, tls: bool = True,
           host: str = "127.0.0.1", source: str | None = None) -> ftplib.FTP:
    """Log in as a camera does: explicit FTPS (AUTH TLS, PROT P) unless ``tls`` is False."""
    ftp = connect(port, tls=tls, host=host, source=source)
    login(ftp, user, password)
    return ftp


def connect(port: int, *, tls: bool = True, host: str = "127.0.0.1", source: str | None = None
            ) -> ftplib.FTP:
    """A connected client, not logged in (``source``: the local address to connect from)."""
    where = (source, 0) if source else None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the node's self-signed device certificate
        ftp: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=60, source_address=where)
    else:
        ftp = ftplib.FTP(timeout=60, source_address=where)
    ftp.connect(host, port)
    return ftp


def login(ftp: ftplib.FTP, user: str, password: str) -> None:
    if isinstance(ftp, ftplib.FTP_TLS):
        ftp.auth()
        ftp.login(user, password)
        ftp.prot_p()
    else:
        ftp.login(user, password)


def sha256(path: Path | bytes) -> str:
    return hashlib.sha256(path if isinstance(path, bytes) else path.read_bytes()).hexdigest()


def send_part(ftp: ftplib.FTP, name: str, data: bytes, *, rest: int | None = None
              ) -> socket.socket:
    """Open a STOR data connection and send ``data``; the caller ends the transfer."""
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"STOR {name}", rest)
    conn.sendall(data)
    return conn


def cut(ftp: ftplib.FTP, conn: socket.socket) -> str:
    """Close the data socket mid-file, without a TLS goodbye; the server's answer."""
    conn.close()
    try:
        return ftp.voidresp()
    except ftplib.Error as exc:
        return str(exc)


def finish(ftp: ftplib.FTP, conn: socket.socket) -> str:
    """End a STOR properly: TLS close (when protected), then the socket; the server's answer."""
    if isinstance(conn, ssl.SSLSocket):
        conn.unwrap()
    conn.close()
    return ftp.voidresp()
