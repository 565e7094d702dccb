"""The local control API: ``cammesh status``, ``peers``, ``request``, ``get``… against a running node.

A Unix socket in the card's mesh folder, reachable only by this machine's users
with access to the card; one JSON request line in, one JSON answer line out.
Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; a long request
(``get --wait``) may send ``{"note": "..."}`` lines before its answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.errors import MeshError
from protocol.errors import CammeshError

if TYPE_CHECKING:
    import trio

    from protocol.store import HeldRecord, ImageRecord, Store
    from storage.card_smaller import SmallerCopy

log = logging.getLogger("cammesh.control")

MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT = 10.0  # reading one request line from a local client

Note = Callable[[str], Awaitable[None]]  # tells the waiting client something, before the answer
Handler = Callable[[dict[str, Any], Note], Awaitable[dict[str, Any]]]


class NodeNotRunning(MeshError):
    """No node answers on this card's control socket."""


def control_path(card: Path) -> Path:
    from mesh.identity import identity_dir

    return identity_dir(card) / "control.sock"


def image_json(record: ImageRecord, thumbnail_source: str | None = None) -> dict[str, Any]:
    """One picture as ``ls --json`` shows it (the same fields whether or not a node runs)."""
    return {
        "image_id": record.image_id,
        "origin": record.origin,
        "seq": record.seq,
        "name": record.name,
        "size": record.size,
        "mime": record.mime,
        "capture_time": record.capture_time,
        "metadata": dict(record.metadata),
        "where": record.where.value,
        "thumbnail_at": record.thumbnail_at,
        "original_at": record.original_at,
        "thumbnail_bytes": len(record.thumbnail),
        "thumbnail_source": thumbnail_source,
        "wrapped_key": record.wrapped_key is not None,
    }


def check_smaller_request(max_side: object, quality: object) -> tuple[int | None, int | None]:
    """A smaller copy's long edge and JPEG quality as the user gave them (None or "": not
    given); MeshError saying what is allowed otherwise (FIG. 10, S64-S65)."""
    from protocol.messages import Limits
    from storage.smaller import DEFAULT_QUALITY

    def whole(value: object, lo: int, hi: int, what: str) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if type(value) is not int or not lo <= value <= hi:
            raise MeshError(f"{what} from {lo} to {hi}: {value!r} is not one")
        return value

    side = whole(max_side, 16, Limits.MAX_SIDE,
                 "the long edge must be a whole number of pixels (empty: the original size)")
    q = whole(quality, 1, 100, f"the JPEG quality must be a whole number (empty: {DEFAULT_QUALITY})")
    return side, q


def sealed_without_key(card: Store) -> int:
    """How many originals the card holds sealed for their owners with no key wrapped for this
    device: only their owners can read them out (issue 7; issue 17 has it said)."""
    return sum(sealed_no_key(held, card.image(held.image_id)) for held in card.held_originals())


def sealed_no_key(held: HeldRecord, record: ImageRecord | None) -> bool:
    """Held sealed (the bytes held are not the picture's), and no key was wrapped for this
    device with the picture's thumbnail (``record``, None when it has none)."""
    return held.digest != held.image_id and (record is None or record.wrapped_key is None)


def smaller_json(copy: SmallerCopy | None) -> dict[str, Any] | None:
    """A smaller copy on the card, as listings show it: null when there is none (issue 17)."""
    if copy is None:
        return None
    return {"size": copy.size, "stored_at": copy.stored_at, "kept": copy.kept}


async def serve_control(
    card: Path, handle: Handler, *, task_status: trio.TaskStatus[Path] | None = None
) -> None:
    """Answer control requests on the card's socket until cancelled (``nursery.start`` it)."""
    import trio  # the node's; a client (``ask``) starts without it

    path = control_path(card)
    path.unlink(missing_ok=True)  # a node killed with SIGKILL leaves its socket behind
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with _short_name(path) as name:
        await sock.bind(name)
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)

    async def one(stream: trio.SocketStream) -> None:
        async def note(text: str) -> None:
            with contextlib.suppress(trio.BrokenResourceError):  # the client went away
                await stream.send_all(json.dumps({"note": text}).encode() + b"\n")

        async with stream:
            try:
                with trio.fail_after(REQUEST_TIMEOUT):
                    request = await _read_line(stream)
                answer = await handle(json.loads(request), note)
            except (ValueError, trio.TooSlowError) as exc:
                answer = {"ok": False, "error": f"bad control request: {exc}"}
            except CammeshError as exc:  # a bad id, a full card...: the client's to read
                answer = {"ok": False, "error": str(exc)}
            except Exception as exc:  # a bug answering one request must not stop the node
                log.exception("control request failed")
                answer = {"ok": False, "error": f"the node failed to answer: {exc!r}"}
            with contextlib.suppress(trio.BrokenResourceError):  # the client went away
                await stream.send_all(json.dumps(answer).encode() + b"\n")

    try:
        if task_status is not None:
            task_status.started(path)
        await trio.serve_listeners(one, [listener])
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _short_name(path: Path) -> Iterator[str]:
    """A name ``bind``/``connect`` accept: AF_UNIX paths stop at ~107 bytes, card folders do not."""
    if len(os.fsencode(path)) <= 100:
        yield os.fspath(path)
        return
    # Through the folder's descriptor in /proc/self/fd, short whatever the card's path.
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


async def _read_line(stream: trio.SocketStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        more = await stream.receive_some(4096)
        if not more:
            break
        data += more
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    return data


def ask(
    card: Path,
    request: dict[str, Any],
    *,
    timeout: float = 600.0,
    on_note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Send one request to the node running on ``card`` (blocking); raises NodeNotRunning.

    ``on_note`` hears the notes the node sends while it works on the request.
    """
    path = control_path(card)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with _short_name(path) as name:
                sock.connect(name)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NodeNotRunning(
                f"no node is running on {card}; start one with `cammesh node {card}`"
            ) from exc
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while True:
            line, newline, rest = data.partition(b"\n")
            if newline:
                doc = json.loads(line)
                if "note" not in doc or "ok" in doc:
                    data = line
                    break
                data = rest
                if on_note is not None:
                    on_note(str(doc["note"]))
                continue
            more = sock.recv(65536)
            if not more:
                break
            data += more
    if not data:
        raise MeshError("the node closed the control connection without answering")
    answer: dict[str, Any] = json.loads(data)
    if not answer.get("ok"):
        raise MeshError(str(answer.get("error", "the node refused the request")))
    return answer
