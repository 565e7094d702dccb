"""The desk's web page (FIG. 13-18): every camera's thumbnails, live, on a local ASGI server.

``serve_desk(runtime, host=, port=)`` runs a small hand-written ASGI app on
hypercorn's trio worker beside a running node.  The page (mesh/desk_static/)
loads the board as paged JSON, then follows Server-Sent Events; thumbnails and
originals are separate URLs read from the card through ``Runtime.call``.

Routes: ``GET /`` and ``/static/*``; ``GET /api/tiles?offset=&limit=`` (newest
first); ``GET /api/events?since=V`` (SSE); ``GET /api/ftp`` (the node's FTP cameras);
``GET /thumb/ID``; ``GET /strip/ID/K`` (mesh/desk_strips.py); ``GET /original/ID``
(``?download=1``); ``POST /api/request {"ids", "max_side", "quality"}``;
``POST /api/refuse {"ids"}``; the editor's marks, labels, caption templates and
code replacements (mesh/desk_marks.py).  Other parts add routes of their own to
``Desk.routes``.  Requests with a foreign Host or Origin are refused, so another web
site cannot drive the desk from the user's browser.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from mesh.control import check_smaller_request
from mesh.desk_board import FINISHED, REREAD, Board, Facts, image_of, read_facts
from mesh.desk_marks import ROUTES as MARKS_ROUTES
from mesh.desk_marks import DeskMarks
from mesh.desk_strips import route as strip_route
from mesh.errors import HttpError, MeshError
from mesh.runtime import Runtime
from protocol import events as ev
from protocol.messages import Limits
from protocol.store import StoreError, Where

log = logging.getLogger("cammesh.desk")

STATIC = Path(__file__).parent / "desk_static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
PAGE_LIMIT = 2000  # tiles per /api/tiles answer
READ_SIZE = 1024 * 1024  # bytes of an original per Runtime.call
HEARTBEAT = 15.0  # seconds between SSE comments, so proxies and the browser keep the stream
PUSH_EVERY = 0.1  # seconds: changes are pushed in batches, at most this often
MAX_BODY = 256 * 1024
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_ID = re.compile(r"[0-9a-f]{64}\Z")
NO_THUMBNAIL = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120"><rect width="160" '
    b'height="120" fill="#333"/><text x="80" y="64" fill="#aaa" font-family="sans-serif" '
    b'font-size="13" text-anchor="middle">no thumbnail</text></svg>'
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# A route another part of the desk adds: (method, path, query, receive, send) -> answered?
Route = Callable[[str, str, dict[str, str], Receive, Send], Awaitable[bool]]


class Desk:
    """The board of one running node, kept current by its events, and the ASGI app that shows it."""

    def __init__(self, runtime: Runtime, *, host: str = "127.0.0.1",
                 codes: dict[str, str] | None = None) -> None:
        self.runtime = runtime
        self.host = host
        self.board = Board(runtime.identity.device_id)
        self.changed = trio.Event()
        self._reread_send, self._reread = trio.open_memory_channel[str](math.inf)
        self.marks = DeskMarks(self, codes=codes)
        self.routes: list[Route] = [strip_route(self)]  # tried before a 404 (strips, export...)

    def reread(self, ids: list[str]) -> None:
        """Read these pictures' facts from the card again; pages get them in the next batch."""
        for image_id in ids:
            self._reread_send.send_nowait(image_id)

    # --- keeping the board current ------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the board, then follow node events until cancelled."""
        rt = self.runtime
        board = self.board
        board.name(rt.identity.device_id, rt.config.name)
        for pin in rt.membership().peers:
            board.name(pin.device_id, pin.name)
        board.connected.update(rt.links)
        unsubscribe = rt.subscribe(self._on_event)
        unsubscribe_captures = rt.subscribe_captures(self._reread_send.send_nowait)
        try:
            await self.marks.load_labels()
            board.update(await rt.call(read_facts, rt.card, board.me))
            self._wake()
            task_status.started()
            while True:
                ids = [await self._reread.receive()]
                while len(ids) < 500:
                    try:
                        ids.append(self._reread.receive_nowait())
                    except trio.WouldBlock:
                        break
                facts: list[Facts] = await rt.call(read_facts, rt.card, board.me, ids)
                new = board.update(facts)
                if new and self.marks.templates:
                    await self.marks.arrived(new)
                self._wake()
        finally:
            unsubscribe()
            unsubscribe_captures()

    def _on_event(self, event: ev.NodeEvent) -> None:
        board = self.board
        if isinstance(event, ev.TransferProgress):
            board.progress(event.image_id, event.peer, event.done, event.total)
        elif isinstance(event, ev.OriginalArrived):
            board.stopped(event.image_id)  # a smaller copy shows once the card is read again
        elif isinstance(event, ev.TransferRefused):
            board.stopped(event.image_id, f"{board.shown(event.peer)}: {event.reason}")
        elif isinstance(event, ev.RequestPending):  # why a reserved original waits (issue 17)
            board.stopped(event.image_id, event.reason)
        elif isinstance(event, FINISHED):
            board.stopped(event.image_id)
        elif isinstance(event, ev.PeerReady):
            board.name(event.peer, event.hello.name)
            board.connected.add(event.peer)
        elif isinstance(event, ev.PeerGone):
            board.peer_gone(event.peer)
        image_id = image_of(event)
        if isinstance(event, REREAD) and image_id is not None:
            self._reread_send.send_nowait(image_id)
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    wake = _wake  # for the parts of the desk beside this module (mesh/desk_marks.py)

    # --- the ASGI app -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return  # no websockets here: the page follows Server-Sent Events
        try:
            self._check_origin(scope)
            await self._route(scope, receive, send)
        except HttpError as exc:
            await _send_json(send, {"error": str(exc)}, status=exc.status)

    def _check_origin(self, scope: Scope) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        allowed = LOOPBACK | {self.host}
        if self.host not in ("0.0.0.0", "::"):
            host = _hostname(headers.get("host", ""))
            if host not in allowed:
                raise HttpError(403, f"the desk answers only on {self.host}, not {host!r}")
        origin = headers.get("origin")
        foreign = origin is not None and (
            _hostname(origin.split("://", 1)[-1]) != _hostname(headers.get("host", ""))
        )
        if scope["method"] == "POST" and foreign:
            raise HttpError(403, "a page from another site may not drive the desk")

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        if method == "GET" and path in ("/", "/index.html"):
            await _send_file(send, STATIC / "index.html")
        elif method == "GET" and path.startswith("/static/"):
            name = path.removeprefix("/static/")
            if "/" in name or name.startswith(".") or not (STATIC / name).is_file():
                raise HttpError(404, "no such file")
            await _send_file(send, STATIC / name)
        elif method == "GET" and path == "/api/tiles":
            await _send_json(send, self.tiles_page(query))
        elif method == "GET" and path == "/api/status":
            await _send_json(send, self.board.status_json())
        elif method == "GET" and path == "/api/ftp":
            await _send_json(send, self.ftp_cameras())
        elif method == "GET" and path == "/api/events":
            await self.events_stream(_int(query.get("since"), 0), receive, send)
        elif method == "GET" and path.startswith("/thumb/"):
            await self.thumbnail(_image_id(path.removeprefix("/thumb/")), send)
        elif method == "GET" and path.startswith("/original/"):
            await self.original(_image_id(path.removeprefix("/original/")), "download" in query,
                                send, copy="copy" in query)
        elif method == "POST" and path in ("/api/request", "/api/refuse"):
            body = await _read_json(receive)
            ids = _ids(body)
            if path == "/api/request":
                await self.request(ids, body.get("max_side"), body.get("quality"))
            else:
                await self.refuse(ids)
            await _send_json(send, {"ok": True, "ids": ids})
        elif method == "POST" and path == "/api/keep":
            body = await _read_json(receive)
            await _send_json(send, await self.keep(_ids(body), body.get("keep", True)))
        elif (method, path) in MARKS_ROUTES:
            body = await _read_json(receive) if method == "POST" else {}
            await _send_json(send, await self.marks.answer(method, path, body))
        else:
            for route in self.routes:
                if await route(method, path, query, receive, send):
                    return
            raise HttpError(404, f"no page {path}")

    # --- the answers ------------------------------------------------------------------------

    def tiles_page(self, query: dict[str, str]) -> dict[str, Any]:
        board = self.board
        offset = max(0, _int(query.get("offset"), 0))
        limit = min(PAGE_LIMIT, max(1, _int(query.get("limit"), PAGE_LIMIT)))
        tiles = board.newest_first(query.get("origin") or None)
        return {
            **board.status_json(),
            "offset": offset,
            "tiles": [board.tile_json(t) for t in tiles[offset : offset + limit]],
        }

    def ftp_cameras(self) -> dict[str, Any]:
        """This node's FTP door, as `cammesh status` shows it: port and each camera's account,
        photographer, frames received, last frame and uploads under way; null without one."""
        door = self.runtime.ftp
        return {"ftp": None if door is None else {"port": door.port, "cameras": door.status()}}

    async def events_stream(self, since: int, receive: Receive, send: Send) -> None:
        """Server-Sent Events: changed tiles and the status, in batches, until the page leaves."""
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"),
        ]})
        board = self.board
        if since > board.version:
            since = 0  # a page from before this desk restarted: send it everything again
        async with trio.open_nursery() as nursery:

            async def until_gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_gone)
            while True:
                changed = board.changed_since(since)
                if changed:
                    since = board.version
                    payload = {"tiles": [board.tile_json(t) for t in changed],
                               "status": board.status_json()}
                    await send({"type": "http.response.body", "more_body": True,
                                "body": f"data: {json.dumps(payload)}\n\n".encode()})
                    await trio.sleep(PUSH_EVERY)
                wake = self.changed
                if board.version > since:
                    continue
                with trio.move_on_after(HEARTBEAT) as waited:
                    await wake.wait()
                if waited.cancelled_caught:
                    await send({"type": "http.response.body", "body": b": still here\n\n",
                                "more_body": True})

    async def thumbnail(self, image_id: str, send: Send) -> None:
        record = await self.runtime.call(self.runtime.card.image, image_id)
        if record is None:
            raise HttpError(404, "no such picture on this desk")
        if not record.thumbnail:  # none could be made (FIG. 24 allows it): say so in the grid
            await _send_bytes(send, NO_THUMBNAIL, "image/svg+xml")
            return
        # A picture's thumbnail never changes (the id is its hash): let the browser keep it.
        await _send_bytes(send, record.thumbnail, "image/jpeg",
                          extra=[(b"cache-control", b"public, max-age=31536000, immutable")])

    async def original(self, image_id: str, download: bool, send: Send, *, copy: bool = False) -> None:
        """The original when it is here, else (or with ``copy``) the smaller copy the card
        keeps (FIG. 10), named ``NAME-smaller.jpg`` so that it is never taken for the original."""
        rt = self.runtime
        record = await rt.call(rt.card.image, image_id)
        if record is None:
            raise HttpError(404, "no such picture on this desk")
        size, read, mime, name = record.size, rt.card.read_original, record.mime, record.name
        if copy or record.where is not Where.LOCAL:
            smaller = (await rt.call(rt.card.smaller_copies)).get(image_id)
            if smaller is None and copy:
                raise HttpError(404, "this desk keeps no smaller copy of that picture")
            if smaller is None:
                raise HttpError(409, "its original has not arrived yet: select it and press Transfer")
            size, read, mime = smaller, rt.card.read_smaller, "image/jpeg"
            name = f"{name.rsplit('.', 1)[0]}-smaller.jpg"
        headers = [(b"content-type", mime.encode("latin-1", "replace") or b"image/jpeg"),
                   (b"content-length", str(size).encode())]
        if download:
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[: Limits.MAX_NAME] or image_id[:12]
            headers.append((b"content-disposition", f'attachment; filename="{safe}"'.encode()))
        try:
            first = await rt.call(read, image_id, 0, READ_SIZE)
        except StoreError as exc:  # dispersed or freed since we looked
            raise HttpError(409, str(exc)) from exc
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        offset, data = 0, first
        while True:
            offset += len(data)
            last = offset >= size or not data
            await send({"type": "http.response.body", "body": data, "more_body": not last})
            if last:
                return
            data = await rt.call(read, image_id, offset, READ_SIZE)

    async def request(self, ids: list[str], max_side: object, quality: object) -> None:
        """FIG. 14A: these originals first, maybe as smaller copies (FIG. 10, S64-S65)."""
        rt = self.runtime
        try:  # the very check and words of `cammesh request --max-side --quality`
            side, q = check_smaller_request(max_side, quality)
        except MeshError as exc:
            raise HttpError(400, str(exc)) from exc
        for image_id in ids:
            await rt.call(rt.node.request, image_id, rt.now(), max_side=side, quality=q)
            self._reread_send.send_nowait(image_id)

    async def keep(self, ids: list[str], keep: object) -> dict[str, Any]:
        """Keep these smaller copies once their originals are here (or, ``keep`` false, let
        them go then: at once where the original is here already), as `cammesh keep` does."""
        if not isinstance(keep, bool):
            raise HttpError(400, "keep is true (keep the copies) or false (let them go)")
        rt = self.runtime
        copies = await rt.call(rt.card.smaller_copies)
        for image_id in ids:  # each checked before any is changed: all or nothing
            if image_id not in copies:
                tile = self.board.tiles.get(image_id)
                raise HttpError(409, f"this desk has no smaller copy of "
                                     f"{tile.facts.name if tile else image_id[:12]} to keep: "
                                     "ask for one first (a long edge, then Transfer)")
        kept = {}
        for image_id in ids:
            try:
                copy = await rt.call(rt.card.keep_smaller, image_id, keep)
            except StoreError as exc:  # its copy went meanwhile
                raise HttpError(409, str(exc)) from exc
            kept[image_id] = copy is not None and copy.kept
            self._reread_send.send_nowait(image_id)
        return {"ok": True, "kept": kept}

    async def refuse(self, ids: list[str]) -> None:
        """FIG. 13B: "not necessary": the original leaves the queue, a stream in flight stops."""
        rt = self.runtime
        for image_id in ids:
            await rt.call(rt.node.refuse, image_id, rt.now())
            self.board.stopped(image_id)
            self._reread_send.send_nowait(image_id)
        self._wake()


async def serve_desk(
    runtime: Runtime,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    desk: Desk | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the desk page for ``runtime`` until cancelled; ``task_status.started`` gets its URL.

    Pass ``desk`` to act on the board from code too (``desk.request``, ``desk.refuse``).
    """
    desk = desk or Desk(runtime, host=host)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        await nursery.start(desk.run)
        binds: list[str] = await nursery.start(lambda task_status: serve(
            desk, config, task_status=task_status))  # type: ignore[arg-type]
        url = binds[0] if binds else f"http://{host}:{port}"
        log.info("the desk is on %s/", url)
        task_status.started(url)


# --- small HTTP helpers ------------------------------------------------------------------------


def _hostname(netloc: str) -> str:
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise HttpError(400, "name the pictures as a non-empty list of ids")
    return [_image_id(i) for i in ids]


def _image_id(value: object) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise HttpError(400, "a picture id is 64 lowercase hexadecimal characters")
    return value


async def _read_json(receive: Receive) -> dict[str, Any]:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise HttpError(413, "the request is too large")
        if not message.get("more_body"):
            break
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise HttpError(400, f"the request is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise HttpError(400, "the request must be a JSON object")
    return value


async def _send_bytes(send: Send, body: bytes, content_type: str, *, status: int = 200,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, value: Any, *, status: int = 200) -> None:
    await _send_bytes(send, json.dumps(value).encode(), "application/json", status=status,
                      extra=[(b"cache-control", b"no-store")])


async def _send_file(send: Send, path: Path) -> None:
    body = await trio.Path(path).read_bytes()
    await _send_bytes(send, body, STATIC_TYPES.get(path.suffix, "application/octet-stream"),
                      extra=[(b"cache-control", b"no-cache")])
