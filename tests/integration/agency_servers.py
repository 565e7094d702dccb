"""An agency's servers for the delivery tests: pyftpdlib (FTP, explicit FTPS) and asyncssh's
SFTP server, each a real process on a loopback port that a test can kill and start again.

    python -m tests.integration.agency_servers ftp|ftps|sftp --port P --root DIR --log FILE
        [--cert PEM --key PEM] [--host-key KEY]

The user is ``agency`` with password ``s3cret``.  Every file renamed into place (how a
delivery finishes: NAME.part -> NAME) is logged as one JSON line ``{"delivered": NAME}``, so a
test counts how many times each picture arrived.  ``make_cert`` and ``make_host_key`` make the
FTPS certificate (for 127.0.0.1) and the SSH host key.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER, PASSWORD = "agency", "s3cret"
ROOT = Path(__file__).resolve().parents[2]


def _log(path: Path, name: str) -> None:
    with path.open("a") as out:
        out.write(json.dumps({"delivered": name, "t": time.time()}) + "\n")


def delivered(log: Path) -> list[str]:
    """The names renamed into place, in order, one per arrival (a repeat is a second arrival)."""
    if not log.exists():
        return []
    return [json.loads(line)["delivered"] for line in log.read_text().splitlines() if line]


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agency test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "agency-cert.pem", folder / "agency-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_host_key(folder: Path, port: int) -> tuple[Path, Path]:
    """An SSH host key and a known_hosts file that trusts it on 127.0.0.1:``port``."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path, known = folder / "host_key", folder / "known_hosts"
    key.write_private_key(str(key_path))
    public = key.export_public_key().decode().strip()
    known.write_text(f"[127.0.0.1]:{port} {public}\n")
    return key_path, known


@dataclass
class AgencyServer:
    """One server process; ``start`` (again after ``kill``) on the same port and folder."""

    kind: str
    port: int
    root: Path
    log: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgencyServer:
        import socket

        self.root.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tests.integration.agency_servers", self.kind,
                   "--port", str(self.port), "--root", str(self.root), "--log", str(self.log),
                   *self.extra]
        with (self.log.parent / f"{self.kind}-server.err").open("ab") as errors:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=errors)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the {self.kind} server exited"
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return self
            time.sleep(0.05)
        raise AssertionError(f"the {self.kind} server never listened on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


# --- the servers, run in their own process ---------------------------------------------------


def serve_ftp(args: argparse.Namespace) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

    base: Any = TLS_FTPHandler if args.kind == "ftps" else FTPHandler

    class Handler(base):  # type: ignore[misc, valid-type]
        def ftp_RNTO(self, path: str) -> Any:
            result = super().ftp_RNTO(path)
            if result is not None:
                _log(args.log, os.path.basename(path))
            return result

    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(args.root), perm="elradfmwMT")
    Handler.authorizer = authorizer
    Handler.permit_foreign_addresses = False
    if args.kind == "ftps":
        Handler.certfile, Handler.keyfile = str(args.cert), str(args.key)
        Handler.tls_control_required = Handler.tls_data_required = True
    server = FTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever(handle_exit=True)


def serve_sftp(args: argparse.Namespace) -> None:
    import asyncio

    import asyncssh

    class Server(asyncssh.SSHServer):  # type: ignore[misc]
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return bool(username == USER and password == PASSWORD)

    class Files(asyncssh.SFTPServer):  # type: ignore[misc]
        def __init__(self, chan: Any) -> None:
            super().__init__(chan, chroot=str(args.root).encode())

        def rename(self, oldpath: bytes, newpath: bytes) -> Any:
            result = super().rename(oldpath, newpath)
            _log(args.log, os.path.basename(newpath.decode()))
            return result

    async def main() -> None:
        await asyncssh.listen("127.0.0.1", args.port, server_host_keys=[str(args.host_key)],
                              server_factory=Server, sftp_factory=Files)
        await asyncio.Event().wait()

    asyncio.run(main())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("ftp", "ftps", "sftp"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--host-key", type=Path)
    args = p.parse_args()
    if args.kind == "sftp":
        serve_sftp(args)
    else:
        serve_ftp(args)


if __name__ == "__main__":
    main()
