"""The desk's HTTP side without a browser: real card, real runtime, real hypercorn on loopback.

A small h11 client speaks to the server; the browser tests are in
tests/integration/test_desk_browser.py.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import h11
import trio

from mesh.desk import Desk, serve_desk
from mesh.desk_demo import DeviceSpec, make_mesh, runtime_for
from mesh.runtime import Runtime
from protocol.messages import Role
from protocol.store import Decision, ImageRecord, Incoming, Where
from storage.card import Card
from storage.importer import import_paths
from storage.samples import write_sample_jpegs


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)


async def http(port: int, method: str, path: str, *, body: bytes = b"",
               headers: dict[str, str] | None = None) -> Answer:
    """One request on a fresh connection, the whole answer read."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        sent = {"host": f"127.0.0.1:{port}", "connection": "close",
                "content-length": str(len(body)), **(headers or {})}
        await stream.send_all(conn.send(h11.Request(method=method, target=path,
                                                    headers=list(sent.items()))))
        await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        status, got, data = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                got = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                return Answer(status, got, data)


@dataclass
class Running:
    port: int
    runtime: Runtime
    local: list[str]  # pictures captured on the desk, oldest first
    peer: str  # a camera's picture the desk has only the thumbnail of


@asynccontextmanager
async def desk_running(tmp_path: Path, *, smaller: bytes | None = None,
                       held_sealed: bytes | None = None) -> AsyncIterator[Running]:
    """A desk with two pictures of its own and a camera's thumbnail (and ``smaller`` copy, or
    ``held_sealed`` bytes it holds for the camera, sealed, with no key wrapped for it)."""
    desk_path, cam_path = make_mesh(tmp_path, [DeviceSpec("desk", Role.DESK),
                                               DeviceSpec("cam", Role.CAMERA)])
    pictures = write_sample_jpegs(tmp_path / "pictures", 2)
    with Card.open(cam_path) as cam:
        camera = cam.device_id
    with Card.open(desk_path) as card:
        summary = import_paths(card, pictures, now=time.time())
        local = [item.image_id for item in summary.imported]
        peer = hashlib.sha256(b"a picture on the camera").hexdigest()
        card.add_thumbnail(ImageRecord(
            image_id=peer, origin=camera, seq=1, name="IMG_9999.JPG", size=12_345_678,
            mime="image/jpeg", capture_time=2_000_000_000.0,
            metadata={"exposure_text": "1/500", "metering_mode": "spot"},
            thumbnail=card.image(local[0]).thumbnail,  # type: ignore[union-attr]
            where=Where.ABSENT), now=time.time())
        if smaller is not None:  # as a smaller copy that arrived before this desk restarted
            card.write_partial(peer, Incoming.SMALLER, 0, smaller)
            card.finish_partial(peer, Incoming.SMALLER, hashlib.sha256(smaller).hexdigest(), time.time())
        if held_sealed is not None:
            card.reserve(peer, len(held_sealed))
            card.write_partial(peer, Incoming.HELD, 0, held_sealed)
            card.finish_partial(peer, Incoming.HELD, hashlib.sha256(held_sealed).hexdigest(),
                                time.time(), owner=camera)
        runtime = runtime_for(desk_path, card)
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            url = await nursery.start(lambda task_status: serve_desk(
                runtime, host="127.0.0.1", port=0, task_status=task_status))
            yield Running(int(url.rsplit(":", 1)[1]), runtime, local, peer)
            nursery.cancel_scope.cancel()


async def test_tiles_newest_first_with_their_information(tmp_path: Path) -> None:
    async with desk_running(tmp_path) as desk:
        page = (await http(desk.port, "GET", "/api/tiles")).json()
        ids = [t["id"] for t in page["tiles"]]
        assert ids[0] == desk.peer  # captured in 2033: the newest
        assert set(ids) == {desk.peer, *desk.local} and page["total"] == 3
        peer = page["tiles"][0]
        assert peer["mark"] == "thumbnail" and peer["name"] == "IMG_9999.JPG"
        assert peer["size"] == 12_345_678 and peer["meta"]["metering_mode"] == "spot"
        assert {t["mark"] for t in page["tiles"][1:]} == {"local"}
        cams = {c["name"] for c in page["cameras"]}
        assert cams == {"desk", "cam"}
        one = (await http(desk.port, "GET", "/api/tiles?offset=1&limit=1")).json()
        assert [t["id"] for t in one["tiles"]] == ids[1:2]
        html = await http(desk.port, "GET", "/")
        assert html.status == 200 and b"desk.js" in html.body


async def test_thumbnail_and_original_bytes(tmp_path: Path) -> None:
    async with desk_running(tmp_path) as desk:
        record = await desk.runtime.call(desk.runtime.card.image, desk.local[0])
        assert record is not None
        thumb = await http(desk.port, "GET", f"/thumb/{desk.local[0]}")
        assert thumb.status == 200 and thumb.body == record.thumbnail
        assert "immutable" in thumb.headers["cache-control"]
        original = await http(desk.port, "GET", f"/original/{desk.local[0]}?download=1")
        assert original.status == 200
        assert hashlib.sha256(original.body).hexdigest() == desk.local[0]
        assert record.name in original.headers["content-disposition"]
        absent = await http(desk.port, "GET", f"/original/{desk.peer}")
        assert absent.status == 409 and "Transfer" in absent.json()["error"]
        assert (await http(desk.port, "GET", "/thumb/not-an-id")).status == 400
        assert (await http(desk.port, "GET", "/static/../desk.py")).status == 404


async def test_a_smaller_copy_kept_on_the_card_is_marked_and_opens(tmp_path: Path) -> None:
    copy = (tmp_path / "small.jpg")
    write_sample_jpegs(tmp_path / "small", 1)[0].rename(copy)
    async with desk_running(tmp_path, smaller=copy.read_bytes()) as desk:
        tiles = {t["id"]: t for t in (await http(desk.port, "GET", "/api/tiles")).json()["tiles"]}
        assert tiles[desk.peer]["mark"] == "smaller"
        assert tiles[desk.peer]["smaller"]["size"] == copy.stat().st_size
        opened = await http(desk.port, "GET", f"/original/{desk.peer}?download=1")
        assert opened.status == 200 and opened.body == copy.read_bytes()
        assert opened.headers["content-type"] == "image/jpeg"
        assert "IMG_9999-smaller.jpg" in opened.headers["content-disposition"]


async def test_refuse_and_request_change_the_marks_live(tmp_path: Path) -> None:
    async with desk_running(tmp_path) as desk:
        version = (await http(desk.port, "GET", "/api/status")).json()["version"]
        refused = await http(desk.port, "POST", "/api/refuse",
                             body=json.dumps({"ids": [desk.peer]}).encode(),
                             headers={"content-type": "application/json"})
        assert refused.status == 200
        mine = await desk.runtime.call(desk.runtime.card.decision, desk.peer)
        assert mine is not None and mine.decision is Decision.REFUSED
        # The change reaches a page following the event stream.
        stream = await trio.open_tcp_stream("127.0.0.1", desk.port)
        async with stream:
            await stream.send_all(f"GET /api/events?since={version} HTTP/1.1\r\n"
                                  f"Host: 127.0.0.1:{desk.port}\r\n\r\n".encode())
            seen = b""
            with trio.fail_after(20):
                while b"\n\n" not in seen.partition(b"data: ")[2]:
                    seen += await stream.receive_some(65536)
        batch = json.loads(seen.partition(b"data: ")[2].partition(b"\n\n")[0])
        assert [(t["id"], t["mark"]) for t in batch["tiles"]] == [(desk.peer, "refused")]
        # Asked for again, it is reserved for transfer (no camera is connected to send it yet).
        await http(desk.port, "POST", "/api/request", body=json.dumps(
            {"ids": [desk.peer], "max_side": None}).encode())
        with trio.fail_after(20):
            while True:
                tiles = (await http(desk.port, "GET", "/api/tiles")).json()["tiles"]
                if tiles[0]["mark"] == "requested":
                    break
                await trio.sleep(0.05)


async def test_foreign_pages_and_bad_requests_are_refused(tmp_path: Path) -> None:
    async with desk_running(tmp_path) as desk:
        rebound = await http(desk.port, "GET", "/api/tiles", headers={"host": "evil.example:80"})
        assert rebound.status == 403
        body = json.dumps({"ids": [desk.peer]}).encode()
        cross = await http(desk.port, "POST", "/api/refuse", body=body,
                           headers={"origin": "http://evil.example"})
        assert cross.status == 403
        mine = await desk.runtime.call(desk.runtime.card.decision, desk.peer)
        assert mine is None or mine.decision is not Decision.REFUSED
        for bad in (b"{}", b"[1]", b"not json", json.dumps({"ids": ["abc"]}).encode(),
                    json.dumps({"ids": [desk.peer], "max_side": 3}).encode()):
            answer = await http(desk.port, "POST", "/api/request", body=bad)
            assert answer.status == 400, bad
        assert (await http(desk.port, "GET", "/nowhere")).status == 404


async def test_board_follows_events_without_a_page(tmp_path: Path) -> None:
    """The Desk object alone: its board loads from the card and marks a refusal."""
    async with desk_running(tmp_path) as desk:
        board = Desk(desk.runtime)
        async with trio.open_nursery() as nursery:
            await nursery.start(board.run)
            assert len(board.board.tiles) == 3
            await board.refuse([desk.peer])
            with trio.fail_after(20):
                while board.board.tiles[desk.peer].mark(board.board.me) != "refused":
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()


async def test_cammesh_desk_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    [card] = make_mesh(tmp_path, [DeviceSpec("desk", Role.DESK)])
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "mesh.cli", "desk", str(card), "--listen", "127.0.0.1:0",
         "--node-listen", "127.0.0.1:0", "--no-discovery"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        printed = b""
        with trio.fail_after(60):
            while b"/  (Ctrl-C" not in printed:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"cammesh desk ended early: {printed!r}"
                printed += chunk
        url = printed.decode().split("the desk is on ", 1)[1].split("/  (Ctrl-C", 1)[0]
        status = (await http(int(url.rsplit(":", 1)[1]), "GET", "/api/status")).json()
        assert status["total"] == 0 and status["me"]["name"] == "desk"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
