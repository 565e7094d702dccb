"""Cameras upload into a node over FTP and FTPS; each completed upload is a picture at once.

Issue 16, "Must show" 1: real FTP clients (ftplib's FTP and FTP_TLS, and curl where it
exists) act as cameras against a real `cammesh node --ftp`, whose desk peer is connected
over TLS.  Orderings are read from the desk's structured log; waits are bounded polls.
"""

from __future__ import annotations

import ftplib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.samples import write_sample_jpegs
from tests.integration.ftp_camera import (
    DATED,
    FtpMesh,
    camera,
    cut,
    finish,
    send_part,
    sha256,
    start_ftp_mesh,
)
from tests.integration.nodes import first_index, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def ftp_mesh(tmp_path: Path) -> Iterator[FtpMesh]:
    started = start_ftp_mesh(tmp_path / "mesh", accounts={"nikon": "Ana Lopez", "canon": None})
    yield started
    started.stop()


def test_camera_uploads_become_pictures_thumbnails_first(ftp_mesh: FtpMesh, tmp_path: Path
                                                         ) -> None:
    pictures = write_sample_jpegs(tmp_path / "shots", 5, size="24mp", seed=16)
    first, second, cut_one, last, other = pictures
    # The second camera's frame has the same name as the first camera's first frame.
    same_name = tmp_path / "canon" / first.name
    same_name.parent.mkdir()
    shutil.copy(other, same_name)
    port, passwords = ftp_mesh.ftp_port, ftp_mesh.passwords

    nikon = camera(port, "nikon", passwords["nikon"])
    nikon.mkd(DATED)
    nikon.cwd(DATED)
    assert nikon.pwd() == f"/{DATED}"
    for picture in (first, second):
        with picture.open("rb") as f:
            assert nikon.storbinary(f"STOR {picture.name}", f).startswith("226")

    # Cut mid-file: the data socket closes halfway through; the camera will resume it.
    data = cut_one.read_bytes()
    half = len(data) // 2
    answer = cut(nikon, send_part(nikon, cut_one.name, data[:half]))
    assert answer.startswith("426"), answer
    kept = nikon.size(cut_one.name)  # what a camera asks before it resumes
    assert kept is not None and 0 < kept <= half  # what had arrived when the socket closed

    # The last upload is still under way while the first thumbnails reach the desk.
    conn = send_part(nikon, last.name, last.read_bytes()[: 1 << 20])
    wanted = sha256(first)

    def desk_has_first() -> bool:
        return first_index(ftp_mesh.desk.events(), "ThumbnailArrived", wanted) is not None

    wait_until("the desk to show the first upload's thumbnail", desk_has_first)
    conn.sendall(last.read_bytes()[1 << 20 :])
    assert finish(nikon, conn).startswith("226")

    # Resume the cut one with REST from what the node kept.
    nikon.voidcmd("TYPE I")
    assert nikon.size(cut_one.name) == kept
    with cut_one.open("rb") as f:
        f.seek(kept)
        assert nikon.storbinary(f"STOR {cut_one.name}", f, rest=kept).startswith("226")
    # A byte-identical resend is a duplicate, not a second picture.
    with first.open("rb") as f:
        assert nikon.storbinary(f"STOR {first.name}", f).startswith("226")
    nikon.quit()

    # The other camera, plain FTP over IPv6, sends a frame of the same name.
    canon = camera(port, "canon", passwords["canon"], tls=False, host="::1")
    canon.mkd(DATED)
    canon.cwd(DATED)
    with same_name.open("rb") as f:
        assert canon.storbinary(f"STOR {same_name.name}", f).startswith("226")
    canon.quit()

    expected = {sha256(p): p for p in (first, second, cut_one, last, same_name)}
    extra: dict[str, Path] = {}
    curl = shutil.which("curl")
    if curl is not None:  # and a third client, as a script on a camera bag's board would
        curl_one = write_sample_jpegs(tmp_path / "curl", 1, size="24mp", seed=17)[0]
        subprocess.run(
            [curl, "--silent", "--show-error", "--ssl-reqd", "--insecure", "--ftp-create-dirs",
             "-T", str(curl_one), f"ftp://nikon:{passwords['nikon']}@127.0.0.1:{port}/{DATED}/"],
            check=True, timeout=120)
        extra[sha256(curl_one)] = curl_one
    expected |= extra

    def on_card() -> dict[str, dict[str, object]] | None:
        images = ftp_mesh.cam.images()
        return images if set(expected) <= set(images) else None

    images = wait_until("every completed upload to be a picture on the card", on_card)
    # Exactly those: the cut upload's half is no picture, the resend no second one.
    assert set(images) == set(expected)
    assert sha256(data[:kept]) not in images
    for image_id, source in expected.items():
        record = images[image_id]
        # The picture id is the SHA-256 of the stored original: byte-identical.
        assert record["size"] == source.stat().st_size and record["where"] == "local"
        assert record["name"] == source.name
    assert images[sha256(first)]["metadata"]["photographer"] == "Ana Lopez"
    assert images[sha256(same_name)]["metadata"]["ftp_account"] == "canon"
    assert "photographer" not in images[sha256(same_name)]["metadata"]

    def desk_has_all() -> list[dict[str, object]] | None:
        events = ftp_mesh.desk.events()
        arrived = {e.get("image_id") for e in events if e["event"] == "OriginalArrived"}
        return events if set(expected) <= arrived else None

    events = wait_until("every original to reach the desk", desk_has_all)
    for image_id in expected:
        thumb = first_index(events, "ThumbnailArrived", image_id)
        original = first_index(events, "OriginalArrived", image_id)
        assert thumb is not None and original is not None and thumb < original
    desk_images = ftp_mesh.desk.images()
    assert desk_images[sha256(first)]["metadata"]["photographer"] == "Ana Lopez"

    status = ftp_mesh.cam.ask({"op": "status"})["ftp"]
    cameras = {c["account"]: c for c in status["cameras"]}
    assert cameras["nikon"]["frames"] == 5 + len(extra)  # the duplicate counts as a frame
    assert cameras["nikon"]["photographer"] == "Ana Lopez"
    assert cameras["canon"]["frames"] == 1 and cameras["canon"]["uploading"] == []
    # Nothing is left in the camera's folder but its folders: the frames moved on.
    homes = ftp_mesh.mesh["cam"].card.with_name("cam.ftp") / "cameras"
    assert [p for p in homes.rglob("*") if p.is_file()] == []


def test_raw_jpeg_pairs_in_either_order_and_a_raw_cut_cleanly_is_resumed(tmp_path: Path) -> None:
    """RAW+JPEG uploads pair by account, folder and stem (storage/pairs.py), whichever half
    comes first; a RAW whose data connection closes cleanly before the file's end is a 426,
    kept for REST, never a picture (storage/completeness.py)."""
    from storage.movie_samples import write_dng

    ftp_mesh = start_ftp_mesh(tmp_path / "mesh", accounts={"nikon": "Ana Lopez", "canon": None},
                              desk=False)
    try:
        jpegs = write_sample_jpegs(tmp_path / "shots", 4, seed=31)
        dngs = [write_dng(tmp_path / f"raw{i}.DNG", size=(256, 192 + 2 * i)) for i in range(4)]
        port, passwords = ftp_mesh.ftp_port, ftp_mesh.passwords

        def send(ftp: object, local: Path, name: str) -> None:
            with local.open("rb") as f:
                assert ftp.storbinary(f"STOR {name}", f).startswith("226")  # type: ignore[attr-defined]

        nikon = camera(port, "nikon", passwords["nikon"])
        nikon.mkd(DATED)
        nikon.cwd(DATED)
        send(nikon, jpegs[0], "DSC_0001.JPG")  # JPEG first ...
        # ... then its RAW, cut by a clean close halfway (TLS goodbye and all): refused.
        data = dngs[0].read_bytes()
        conn = send_part(nikon, "DSC_0001.NEF", data[: len(data) // 2])
        conn.unwrap()  # type: ignore[attr-defined]
        conn.close()
        with pytest.raises(ftplib.error_temp, match=r"^426"):
            nikon.voidresp()
        kept = nikon.size("DSC_0001.NEF")
        assert kept is not None and 0 < kept <= len(data) // 2
        nikon.voidcmd("TYPE I")
        with dngs[0].open("rb") as f:
            f.seek(kept)
            assert nikon.storbinary("STOR DSC_0001.NEF", f, rest=kept).startswith("226")
        send(nikon, dngs[1], "DSC_0002.NEF")  # RAW first, then its JPEG
        send(nikon, jpegs[1], "dsc_0002.jpg")
        nikon.mkd("other")
        nikon.cwd("other")
        send(nikon, jpegs[2], "DSC_0001.JPG")  # the same stem in another folder: no pair
        nikon.quit()
        canon = camera(port, "canon", passwords["canon"])
        canon.mkd(DATED)
        canon.cwd(DATED)
        send(canon, dngs[2], "DSC_0001.NEF")  # the same folder and stem, another camera
        canon.quit()

        names = {
            sha256(jpegs[0]): "a-jpg", sha256(dngs[0]): "a-raw",
            sha256(dngs[1]): "b-raw", sha256(jpegs[1]): "b-jpg",
            sha256(jpegs[2]): "other-folder", sha256(dngs[2]): "other-camera",
        }

        def on_card() -> dict[str, dict[str, object]] | None:
            images = ftp_mesh.cam.images()
            return images if set(names) <= set(images) else None

        images = wait_until("every upload to be a picture", on_card)
        assert set(images) == set(names)  # the cut half is no picture
        assert images[sha256(dngs[0])]["size"] == len(data)
        key = {names[i]: images[i]["metadata"]["pair"] for i in names}
        assert key["a-jpg"] == key["a-raw"] and key["b-raw"] == key["b-jpg"]
        assert len({key["a-jpg"], key["b-jpg"], key["other-folder"], key["other-camera"]}) == 4
        # The FTP thread's polling is silent (it once logged a line per poll, 20 a second).
        assert ftp_mesh.cam.log.read_text().count("starting FTP") == 0
    finally:
        ftp_mesh.stop()


def test_the_ftp_process_ends_with_its_node_and_the_port_is_free_again(tmp_path: Path) -> None:
    """The FTP server runs in a child process (mesh/ftp.py): a node killed with SIGKILL takes
    it along (its pipe closes), so a restarted node listens on the same port at once."""
    import socket

    ftp_mesh = start_ftp_mesh(tmp_path / "mesh", desk=False)
    try:
        port = ftp_mesh.ftp_port
        [first, second] = write_sample_jpegs(tmp_path / "shots", 2, seed=33)
        nikon = camera(port, "nikon", ftp_mesh.passwords["nikon"])
        with first.open("rb") as f:
            assert nikon.storbinary(f"STOR {first.name}", f).startswith("226")
        wait_until("the first upload on the card", lambda: sha256(first) in ftp_mesh.cam.images())
        ftp_mesh.cam.kill()
        nikon.close()  # its server is gone

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until("the FTP port to close with its node", refused)
        ftp_mesh.mesh.start("cam")
        nikon = camera(port, "nikon", ftp_mesh.passwords["nikon"])
        with second.open("rb") as f:
            assert nikon.storbinary(f"STOR {second.name}", f).startswith("226")
        nikon.quit()
        wait_until("the second upload on the card", lambda: sha256(second) in ftp_mesh.cam.images())
    finally:
        ftp_mesh.stop()


def test_a_killed_ftp_process_is_reported_and_the_node_goes_on(tmp_path: Path) -> None:
    """The FTP server's process dies alone (SIGKILL): the node says so and keeps serving."""
    import os
    import signal

    ftp_mesh = start_ftp_mesh(tmp_path / "mesh", desk=False)
    try:
        node = ftp_mesh.cam.proc
        assert node is not None
        children = [int(c) for t in os.listdir(f"/proc/{node.pid}/task")
                    for c in Path(f"/proc/{node.pid}/task/{t}/children").read_text().split()]
        [child] = [c for c in children if b"spawn" in Path(f"/proc/{c}/cmdline").read_bytes()]
        os.kill(child, signal.SIGKILL)
        wait_until("the node to say its FTP server ended",
                   lambda: "FTP server's process ended" in ftp_mesh.cam.log.read_text())
        assert ftp_mesh.cam.ask({"op": "status"})["ok"]  # the node itself goes on
    finally:
        ftp_mesh.stop()


def test_background_originals_wait_while_a_camera_uploads(ftp_mesh: FtpMesh, tmp_path: Path
                                                          ) -> None:
    """The desk mirrors every original (policy 'all'), but not during an upload: its TLS
    receive and the camera node's send would take the processor the upload needs."""
    under_way, sent = write_sample_jpegs(tmp_path / "shots", 2, seed=18)
    port, passwords = ftp_mesh.ftp_port, ftp_mesh.passwords
    nikon = camera(port, "nikon", passwords["nikon"])
    data = under_way.read_bytes()
    conn = send_part(nikon, under_way.name, data[: len(data) // 2])

    def held(value: bool) -> list[dict[str, object]] | None:
        events = ftp_mesh.cam.events()
        found = [e for e in events if e["event"] == "BackgroundHeld"]
        return events if found and found[-1]["held"] is value else None

    wait_until("the camera node to hold the background lane", lambda: held(True))
    canon = camera(port, "canon", passwords["canon"])
    with sent.open("rb") as f:
        assert canon.storbinary(f"STOR {sent.name}", f).startswith("226")
    canon.quit()
    wanted = sha256(sent)
    wait_until("the finished upload's thumbnail at the desk", lambda: first_index(
        ftp_mesh.desk.events(), "ThumbnailArrived", wanted) is not None)
    time.sleep(1.5)  # a small original's pull and send take milliseconds when not held
    assert first_index(ftp_mesh.desk.events(), "OriginalArrived", wanted) is None

    conn.sendall(data[len(data) // 2 :])
    assert finish(nikon, conn).startswith("226")
    nikon.quit()
    both = {wanted, sha256(under_way)}

    def desk_has_both() -> bool:
        events = ftp_mesh.desk.events()
        return both <= {e.get("image_id") for e in events if e["event"] == "OriginalArrived"}

    wait_until("both originals at the desk once the upload ended", desk_has_both)
    assert held(False) is not None  # let go again
