"""Movies on the desk page as strips (FIG. 15A), each frame marked once its part arrived (FIG. 15B).

A movie's strip frames each start a part of the file: frame k's part runs from its keyframe's
byte offset to the next frame's (the last one's to the end of the file).  Bytes arrive in
order (a stream, resumed from its offset), so the parts in are always the first few: frame k
is marked once the bytes on the card reach the end of its part.  What "the bytes on the card"
are comes from what the node already says: the TransferProgress of the stream under way (its
``done``), else the partial kept from an earlier stream, else all of them once the original is
here.  ``GET /strip/ID/K`` is frame K's JPEG.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mesh.errors import HttpError

if TYPE_CHECKING:
    from mesh.desk import Desk, Receive, Send

_ID = re.compile(r"[0-9a-f]{64}\Z")

# (time in seconds, byte offset of its keyframe or None, "interval" | "scene")
Point = tuple[float, int | None, str]


def parts_in(points: Sequence[Point], done: int, size: int) -> int:
    """How many strip frames, from the first, have their whole part in the first ``done`` bytes."""
    n = 0
    for k, (_, offset, _) in enumerate(points):
        end = next((o for _, o, _ in points[k + 1 :] if o is not None), size)
        if offset is None or done < end:
            break
        n += 1
    return n if done < size else len(points)


def strip_json(points: Sequence[Point], arrived: int) -> dict[str, Any] | None:
    """What a tile carries of its strip: each frame's time and kind, and how many are in."""
    if not points:
        return None
    return {"times": [p[0] for p in points], "kinds": [p[2] for p in points], "in": arrived}


def route(desk: Desk) -> Any:
    """The route that serves strip frames: ``GET /strip/<image id>/<k>``."""

    async def answer(method: str, path: str, query: dict[str, str], receive: Receive,
                     send: Send) -> bool:
        if method != "GET" or not path.startswith("/strip/"):
            return False
        image_id, _, k = path.removeprefix("/strip/").partition("/")
        if not _ID.match(image_id):
            raise HttpError(400, "a picture id is 64 lowercase hexadecimal characters")
        if not k.isdigit():
            raise HttpError(400, "a strip frame is numbered from 0")
        rt = desk.runtime
        frames = await rt.call(rt.card.strip, image_id)
        if int(k) >= len(frames):
            raise HttpError(404, "no such strip frame on this desk")
        # A strip never changes once made (the id is the movie's hash): the browser keeps it.
        jpeg = frames[int(k)].jpeg
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"image/jpeg"), (b"content-length", str(len(jpeg)).encode()),
            (b"cache-control", b"public, max-age=31536000, immutable")]})
        await send({"type": "http.response.body", "body": jpeg})
        return True

    return answer
