"""What a camera's FTP login may not do (issue 16, "Must show" 2), against a real node.

One node serves every test here but the FTPS-required one: a small card (so that a
24-megapixel JPEG does not fit), a one-second data timeout and a short login delay.
"""

from __future__ import annotations

import ftplib
import io
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from storage.samples import write_sample_jpegs
from tests.integration.ftp_camera import (
    DATED,
    FtpMesh,
    camera,
    connect,
    cut,
    send_part,
    sha256,
    start_ftp_mesh,
)
from tests.integration.nodes import wait_until

pytestmark = pytest.mark.integration

CAPACITY = 8 * 1024**2  # a 24-megapixel JPEG is 11 MB: it cannot fit


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpMesh]:
    started = start_ftp_mesh(
        tmp_path_factory.mktemp("ftp-security"), cam_capacity=CAPACITY, desk=False,
        accounts={"nikon": "Ana", "canon": "Ben"},
        ftp_args=("--ftp-data-timeout", "1", "--ftp-login-delay", "0.1"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_jpegs(tmp_path_factory.mktemp("big"), 1, size="24mp", seed=5)[0]


def homes(node: FtpMesh) -> Path:
    return node.mesh["cam"].card.with_name("cam.ftp") / "cameras"


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def refused(call: object, *args: object) -> str:
    with pytest.raises(ftplib.error_perm) as caught:
        call(*args)  # type: ignore[operator]
    return str(caught.value)


def refused_upload(ftp: ftplib.FTP, command: str, source: BinaryIO) -> str:
    """The reply to an upload the node cuts off: the client may see its data socket close
    (it is still writing) before it reads the refusal on the control connection."""
    with pytest.raises(ftplib.error_perm) as caught:
        try:
            ftp.storbinary(command, source)
        except (ssl.SSLError, ConnectionError):
            ftp.getresp()
    return str(caught.value)


def test_anonymous_login_is_refused(node: FtpMesh) -> None:
    for tls in (False, True):
        ftp = connect(node.ftp_port, tls=tls)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.auth()
        assert refused(ftp.login).startswith("530")  # ftplib's default: anonymous
        ftp.close()


def test_wrong_passwords_lock_the_address_out(node: FtpMesh) -> None:
    attacker = "127.0.0.2"  # loopback, but another address than the tests' own
    for attempt in range(5):
        ftp = connect(node.ftp_port, tls=False, source=attacker)
        answer = refused(ftp.login, "nikon", f"guess{attempt}")
        assert answer.startswith("530") and "wrong user name or password" in answer.lower()
        ftp.close()
    # Locked out: even the right password is refused from that address ...
    ftp = connect(node.ftp_port, tls=False, source=attacker)
    answer = refused(ftp.login, "nikon", node.passwords["nikon"])
    assert answer.startswith("530") and "too many wrong passwords" in answer.lower()
    ftp.close()
    # ... but not from another one.
    camera(node.ftp_port, "nikon", node.passwords["nikon"]).quit()


def test_paths_cannot_leave_the_account_folder(node: FtpMesh) -> None:
    card = node.mesh["cam"].card
    home = homes(node) / "nikon"
    home.mkdir(parents=True, exist_ok=True)
    link = home / "card"
    if not link.is_symlink():
        os.symlink(card, link)  # as if something on the machine planted one
    ftp = camera(node.ftp_port, "nikon", node.passwords["nikon"])
    ftp.cwd("..")
    assert ftp.pwd() == "/"  # the account's folder is its whole world
    ftp.cwd("/../../..")
    assert ftp.pwd() == "/"
    for escape in ("../../cam/catalog.sqlite", "/../cam/catalog.sqlite", str(card / "catalog.sqlite"),
                   "card/catalog.sqlite", "/etc/passwd"):
        assert refused(ftp.retrbinary, f"RETR {escape}", lambda _: None).startswith("550")
    assert refused(ftp.cwd, "card").startswith("550")
    assert refused(ftp.cwd, str(card)).startswith("550")
    with pytest.raises(ftplib.Error):
        ftp.retrlines("LIST card", lambda _: None)
    assert refused(ftp.delete, "card/catalog.sqlite").startswith("550")
    assert refused(ftp.storbinary, "STOR card/planted.jpg", io.BytesIO(b"x")).startswith("550")
    assert not (card / "planted.jpg").exists()
    ftp.quit()
    link.unlink()


def test_no_reading_deleting_or_listing_another_accounts_files(node: FtpMesh, big: Path
                                                               ) -> None:
    canon = camera(node.ftp_port, "canon", node.passwords["canon"])
    canon.mkd(DATED)
    canon.cwd(DATED)
    answer = cut(canon, send_part(canon, "SECRET.JPG", big.read_bytes()[:200_000]))
    assert answer.startswith(("426", "552")), answer
    assert canon.size("SECRET.JPG")  # its own unfinished upload: it may look at it
    canon.quit()

    nikon = camera(node.ftp_port, "nikon", node.passwords["nikon"])
    for path in ("/../canon/2026-12-07/SECRET.JPG", "../canon/2026-12-07/SECRET.JPG"):
        assert refused(nikon.retrbinary, f"RETR {path}", lambda _: None).startswith("550")
        assert refused(nikon.delete, path).startswith("550")
        assert refused(nikon.sendcmd, f"RNFR {path}").startswith("550")
    for path in ("/../canon", "../canon/2026-12-07", "/../../cam.ftp/cameras/canon"):
        # Normalised inside its own folder, where there is no such thing.
        assert refused(nikon.retrlines, f"LIST {path}", lambda _: None).startswith("550")
        assert refused(nikon.cwd, path).startswith("550")
    listed: list[str] = []
    nikon.retrlines("LIST /..", listed.append)
    assert not any("canon" in line or "SECRET" in line for line in listed)
    nikon.quit()
    assert (homes(node) / "canon" / DATED / "SECRET.JPG").exists()


def test_an_upload_past_the_cards_capacity_is_refused_with_552(node: FtpMesh, big: Path) -> None:
    ftp = camera(node.ftp_port, "nikon", node.passwords["nikon"])
    # Told its size first (ALLO), the node refuses before a byte is sent.
    assert refused(ftp.sendcmd, f"ALLO {big.stat().st_size}").startswith("552")
    # Not told, it refuses when the bytes pass the room, before they are lost.
    with big.open("rb") as f:
        answer = refused_upload(ftp, "STOR TOO_BIG.JPG", f)
    assert answer.startswith("552"), answer
    ftp.quit()
    assert files_under(homes(node) / "nikon") == []  # nothing half-uploaded stays
    assert sha256(big) not in node.cam.images()
    # A frame that fits still goes in.
    small = write_sample_jpegs(big.parent / "small", 1, seed=6)[0]
    ftp = camera(node.ftp_port, "nikon", node.passwords["nikon"])
    with small.open("rb") as f:
        assert ftp.storbinary(f"STOR {small.name}", f).startswith("226")
    ftp.quit()
    wait_until("the small frame to be a picture", lambda: sha256(small) in node.cam.images())


def test_a_client_that_never_ends_its_file_times_out(node: FtpMesh, big: Path) -> None:
    ftp = camera(node.ftp_port, "nikon", node.passwords["nikon"])
    conn = send_part(ftp, "STALLED.JPG", big.read_bytes()[:100_000])
    # ... and sends nothing more: the node cuts it off after its data timeout (1 s here).
    with pytest.raises(ftplib.Error) as caught:
        ftp.voidresp()
    assert str(caught.value).startswith(("421", "426")), caught.value
    conn.close()
    ftp.close()
    assert [p.name for p in files_under(homes(node) / "nikon")] == ["STALLED.JPG"]
    images = node.cam.images()
    assert not any(i["name"] == "STALLED.JPG" for i in images.values())


def test_plaintext_login_is_refused_when_ftps_is_required(tmp_path: Path) -> None:
    strict = start_ftp_mesh(tmp_path / "strict", desk=False, ftp_args=("--ftp-require-tls",))
    try:
        password = strict.passwords["nikon"]
        plain = connect(strict.ftp_port, tls=False)
        assert refused(plain.login, "nikon", password).startswith(("530", "550"))
        plain.close()
        secured = connect(strict.ftp_port)
        assert isinstance(secured, ftplib.FTP_TLS)
        secured.login("nikon", password)  # AUTH TLS first, then the same password works
        # ... but a data channel in the clear is refused too (pyftpdlib answers 550 when the
        # data connection is asked for, not at PROT C).
        secured.voidcmd("PBSZ 0")
        secured.prot_c()
        assert refused(secured.nlst).startswith(("522", "550"))
        secured.quit()
    finally:
        strict.stop()
