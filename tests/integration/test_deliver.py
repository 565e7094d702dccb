"""Delivery onward against real servers on loopback (issue 19, Must show 4 and part of 5).

A desk and a camera (real cards, real TLS runtimes); the desk pulls thumbnails only, so each
delivered original is first read out of the camera.  The servers are real processes
(tests/integration/agency_servers.py): pyftpdlib for FTP and explicit FTPS, asyncssh's server
for SFTP.  Each is killed in the middle of an upload and started again; the desk's deliverer
is stopped and started again on the same card.  The servers' logs of files renamed into place
show that every tagged picture arrived exactly once, with its caption.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from PIL import Image

from mesh.deliver import Copy, Deliverer, Rule
from mesh.deliver_servers import Target, parse_target
from mesh.desk_demo import DeviceSpec, make_mesh, runtime_for
from mesh.runtime import Address, Runtime
from protocol.config import Policy
from protocol.messages import Role
from storage.card import Card
from storage.importer import import_paths
from storage.xmp import read_marks
from tests.integration.agency_servers import (
    PASSWORD,
    USER,
    AgencyServer,
    delivered,
    make_cert,
    make_host_key,
)
from tests.integration.devices import free_port
from tests.integration.nodes import write_pictures

pytestmark = pytest.mark.integration

WAIT_S = 120.0
BIG = 6 * 1024 * 1024  # an original big enough to be cut off mid-upload at the test's rate
RATE = 1.5 * 1024 * 1024  # bytes per second the deliverer sends in these tests


@dataclass
class DeskAndCamera:
    desk: Runtime
    camera: Runtime
    desk_path: Path
    ids: list[str]  # the camera's pictures, oldest first; the last one is BIG bytes


@asynccontextmanager
async def desk_and_camera(folder: Path) -> AsyncIterator[DeskAndCamera]:
    desk_path, camera_path = make_mesh(folder, [DeviceSpec("desk", Role.DESK),
                                                DeviceSpec("cam", Role.CAMERA)])
    pictures = write_pictures(folder / "shots", 3, side=900, seed=5)
    big = folder / "shots" / "BIG_0001.JPG"
    big.write_bytes(pictures[0].read_bytes() + os.urandom(BIG))  # a JPEG with a long tail
    with Card.open(desk_path) as desk_card, Card.open(camera_path) as camera_card:
        summary = import_paths(camera_card, [*pictures, big], now=time.time())
        ids = [item.image_id for item in summary.imported]
        camera = runtime_for(camera_path, camera_card)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(camera.run)
            desk = runtime_for(desk_path, desk_card, peers=[Address("127.0.0.1", port)],
                               policy=Policy.THUMBNAILS)
            await nursery.start(desk.run)
            await until("the desk to have every thumbnail",
                        lambda: len(desk.card.images()) == len(ids))
            yield DeskAndCamera(desk, camera, desk_path, ids)
            nursery.cancel_scope.cancel()


async def until(what: str, check: Callable[[], object], *, timeout: float = WAIT_S) -> Any:
    deadline = trio.current_time() + timeout
    while True:
        value = check()
        if value:
            return value
        if trio.current_time() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        await trio.sleep(0.05)


def server_for(kind: str, folder: Path) -> tuple[AgencyServer, Path]:
    """A server of ``kind`` and the credentials file for it."""
    port = free_port()
    credentials = folder / "agency.toml"
    lines = [f'password = "{PASSWORD}"']
    extra: list[str] = []
    if kind == "ftps":
        cert, key = make_cert(folder)
        extra = ["--cert", str(cert), "--key", str(key)]
        lines.append(f'ca_file = "{cert}"')
    if kind == "sftp":
        pytest.importorskip("asyncssh", reason="asyncssh is not installed (the sftp extra)")
        host_key, known = make_host_key(folder, port)
        extra = ["--host-key", str(host_key)]
        lines.append(f'known_hosts = "{known}"')
    credentials.write_text("\n".join(lines) + "\n")
    credentials.chmod(0o600)
    server = AgencyServer(kind, port, folder / f"{kind}-root", folder / f"{kind}.log", extra)
    return server, credentials


def target_of(server: AgencyServer, credentials: Path) -> Target:
    return parse_target(f"{server.kind}://{USER}@127.0.0.1:{server.port}/incoming/desk",
                        credentials)


@asynccontextmanager
async def delivering(mesh: DeskAndCamera, target: Target, **options: Any) -> AsyncIterator[Deliverer]:
    deliverer = Deliverer(mesh.desk, target, poll_s=0.2, backoff=(0.2, 1.0), **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(deliverer.run)
        yield deliverer
        nursery.cancel_scope.cancel()


def delivered_ids(deliverer: Deliverer) -> set[str]:
    return {e["image_id"] for e in deliverer.status_json()["entries"] if e["state"] == "delivered"}


@pytest.mark.parametrize("kind", ["ftp", "ftps", "sftp"])
async def test_tagged_pictures_arrive_complete_once_across_a_server_crash_and_a_desk_restart(
    kind: str, tmp_path: Path
) -> None:
    server, credentials = server_for(kind, tmp_path)
    server.start()
    try:
        async with desk_and_camera(tmp_path / "mesh") as mesh:
            target = target_of(server, credentials)
            small, untagged, _, big = mesh.ids
            card = mesh.desk.card
            await mesh.desk.call(card.set_marks, small, tagged=True, caption='Goal <b>&</b> "win"',
                                 headline="Final", keywords=("football",))
            await mesh.desk.call(card.set_marks, untagged, rating=5)  # not tagged: stays
            await mesh.desk.call(card.set_marks, big, tagged=True, caption="the long one")
            inbox = server.root / "incoming" / "desk"
            async with delivering(mesh, target, rate_limit=RATE) as deliverer:
                await until("the first picture to arrive", lambda: small in delivered_ids(deliverer))
                # The server dies with the big original half uploaded, and comes back.
                part = await until("the big upload to be under way", lambda: next(
                    (p for p in inbox.glob("*.part") if p.stat().st_size > 1024 * 1024), None))
                # Tagged by mistake and untagged while it waits its turn: it never goes.
                await mesh.desk.call(card.set_marks, untagged, tagged=True)
                await until("the mistake to be queued", lambda: untagged in {
                    e["image_id"] for e in deliverer.status_json()["entries"]})
                await mesh.desk.call(card.set_marks, untagged, tagged=False)
                server.kill()
                cut_at = part.stat().st_size
                await until("the desk to see the server gone",
                            lambda: deliverer.status_json()["error"])
                refused = deliverer.status_json()["error"]
                server.start()
                await until("the big picture to arrive", lambda: big in delivered_ids(deliverer))
                assert untagged not in {e["image_id"] for e in deliverer.status_json()["entries"]}
            resumed = [offset for image_id, offset in deliverer.attempts if image_id == big]
            # It went on from what the server had kept (FTP REST+STOR, SFTP offset writes).
            assert max(resumed) == cut_at > 0, f"cut at {cut_at}, attempts from {resumed}"
            assert "refused" in refused or "closed" in refused or "answer" in refused, refused

            # A restart of the desk's deliverer sends nothing again; a new tag goes.
            await mesh.desk.call(card.set_marks, mesh.ids[2], tagged=True)
            async with delivering(mesh, target) as again:
                await until("the new tag to arrive", lambda: mesh.ids[2] in delivered_ids(again))
                await trio.sleep(1.0)  # a few more polls: time to send anything twice
    finally:
        server.kill()

    names = delivered(server.log)
    assert sorted(set(names)) == sorted(names), f"delivered twice: {names}"
    originals = {hashlib.sha256(p.read_bytes()).hexdigest(): p
                 for p in inbox.iterdir() if p.suffix.lower() != ".xmp"}
    assert set(originals) == {small, big, mesh.ids[2]}, sorted(p.name for p in inbox.iterdir())
    assert untagged not in originals and not list(inbox.glob("*.part"))
    sidecar = read_marks(originals[small].with_suffix(".xmp").read_bytes())
    assert (sidecar.caption, sidecar.headline, sidecar.keywords, sidecar.tagged) == (
        'Goal <b>&</b> "win"', "Final", ("football",), True)
    assert len(names) == 3 + 3  # three originals and three sidecars, each renamed in once


async def test_resized_copies_carry_their_caption_in_xmp(tmp_path: Path) -> None:
    server, credentials = server_for("ftp", tmp_path)
    server.start()
    try:
        async with desk_and_camera(tmp_path / "mesh") as mesh:
            first = mesh.ids[0]
            await mesh.desk.call(mesh.desk.card.set_marks, first, rating=4, caption="Copy <i>cap</i>",
                                 credit="Desk")
            target = target_of(server, credentials)
            async with delivering(mesh, target, rule=Rule(rating=4),
                                  copy=Copy(long_edge=400, quality=80)) as deliverer:
                await until("the copy to arrive", lambda: first in delivered_ids(deliverer))
    finally:
        server.kill()
    (copy,) = (server.root / "incoming" / "desk").iterdir()
    assert copy.suffix == ".jpg"
    with Image.open(io.BytesIO(copy.read_bytes())) as image:
        assert max(image.size) == 400 and image.format == "JPEG"
        marks = read_marks(image.info["xmp"])
    assert (marks.caption, marks.credit, marks.rating) == ("Copy <i>cap</i>", "Desk", 4)


@pytest.mark.parametrize("kind", ["ftp", "sftp"])
async def test_a_refused_login_and_a_server_that_is_not_there_are_named(
    kind: str, tmp_path: Path
) -> None:
    server, credentials = server_for(kind, tmp_path)
    server.start()
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(credentials.read_text().replace(PASSWORD, "not it"))
    wrong.chmod(0o600)
    try:
        async with desk_and_camera(tmp_path / "mesh") as mesh:
            await mesh.desk.call(mesh.desk.card.set_marks, mesh.ids[0], tagged=True)
            async with delivering(mesh, target_of(server, wrong)) as deliverer:
                error = await until("the refusal", lambda: deliverer.status_json()["error"])
                assert "refused the login" in error
                assert kind == "sftp" or "530" in error
                row = deliverer.status_json()["entries"][0]
                assert row["state"] != "delivered" and row["error"] == error
            nobody = parse_target(f"ftp://{USER}@127.0.0.1:{free_port()}/", credentials)
            async with delivering(mesh, nobody) as deliverer:
                error = await until("the refusal", lambda: deliverer.status_json()["error"])
                assert "connection refused" in error
    finally:
        server.kill()


def test_a_password_on_the_command_line_or_a_readable_credentials_file_is_refused(
    tmp_path: Path,
) -> None:
    from mesh.errors import MeshError

    with pytest.raises(MeshError, match="never put the password in the URL"):
        parse_target("ftp://u:secret@example.org/in", None)
    loose = tmp_path / "loose.toml"
    loose.write_text('password = "x"\n')
    loose.chmod(0o644)
    with pytest.raises(MeshError, match="chmod 600"):
        parse_target("ftp://u@example.org/in", loose)
    with pytest.raises(MeshError, match="ftp://, ftps:// or sftp://"):
        parse_target("http://u@example.org/in", None)


def test_a_desk_process_killed_mid_upload_and_started_again_delivers_each_picture_once(
    tmp_path: Path,
) -> None:
    """The real command line: `cammesh desk --deliver`, SIGKILLed in the middle of an upload."""
    import signal
    import subprocess
    import sys

    from tests.integration.nodes import ROOT

    server, credentials = server_for("ftp", tmp_path)
    (desk_path,) = make_mesh(tmp_path / "mesh", [DeviceSpec("desk", Role.DESK)])
    pictures = write_pictures(tmp_path / "own", 2, side=700, seed=8)
    big = tmp_path / "own" / "BIG.JPG"
    big.write_bytes(pictures[0].read_bytes() + os.urandom(BIG))
    with Card.open(desk_path) as card:
        ids = [i.image_id for i in import_paths(card, [*pictures, big], now=time.time()).imported]
        for image_id in ids:
            card.set_marks(image_id, tagged=True, caption=f"caption of {image_id[:6]}")
    command = [sys.executable, "-m", "mesh.cli", "desk", str(desk_path), "--listen",
               "127.0.0.1:0", "--node-listen", "127.0.0.1:0", "--no-discovery",
               "--deliver", f"ftp://{USER}@127.0.0.1:{server.port}/in",
               "--deliver-credentials", str(credentials), "--deliver-rate", "1MB"]
    inbox = server.root / "in"

    def run_desk() -> subprocess.Popen[bytes]:
        with (tmp_path / "desk.err").open("ab") as errors:
            return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)

    def wait(what: str, check: Callable[[], object]) -> Any:
        deadline = time.monotonic() + WAIT_S
        while not (value := check()):
            assert desk.poll() is None, (tmp_path / "desk.err").read_text()[-2000:]
            assert time.monotonic() < deadline, f"waited {WAIT_S:g} s for {what}"
            time.sleep(0.05)
        return value

    server.start()
    desk = run_desk()
    try:
        wait("the big upload to be under way", lambda: any(
            p.stat().st_size > 1024 * 1024 for p in inbox.glob("*.part")))
        desk.send_signal(signal.SIGKILL)
        desk.wait(timeout=30)
        desk = run_desk()
        wait("all three to arrive", lambda: len(set(delivered(server.log))) == 6)
        time.sleep(2.0)  # polls enough to send something twice, were it to
        desk.send_signal(signal.SIGTERM)
        assert desk.wait(timeout=60) == 0
    finally:
        if desk.poll() is None:
            desk.kill()
            desk.wait(timeout=30)
        server.kill()
    names = delivered(server.log)
    assert len(names) == len(set(names)) == 6, names
    arrived = {hashlib.sha256(p.read_bytes()).hexdigest() for p in inbox.iterdir()
               if p.suffix != ".xmp"}
    assert arrived == set(ids)
