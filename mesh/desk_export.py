"""The desk page's Export button: ``cammesh export`` from inside a running desk.

``cammesh desk CARD --export-to DIR`` adds ``POST /api/export {"tagged", "rating", "label"}``
(start an export of what the filters admit into DIR) and ``GET /api/export`` (how far it is,
and what could not go, with why).  Originals are read out through the desk's own node,
wherever in the mesh they are; files already in DIR are never replaced (mesh/export_commands.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import trio

from mesh.errors import MeshError
from mesh.export_commands import Selection, export, select
from mesh.runtime import Runtime
from protocol.errors import CammeshError
from protocol.store import ImageRecord
from storage.marks import Marks

MAX_BODY = 16 * 1024


class DeskExport:
    """Exports started from the page, one at a time; ``nursery.start(export.run)``."""

    def __init__(self, runtime: Runtime, folder: Path, *, template: str | None = None) -> None:
        self.runtime = runtime
        self.folder = folder
        self.template = template
        self.status: dict[str, Any] = {"folder": str(folder), "running": False, "done": 0,
                                       "total": 0, "written": 0, "skipped": [], "error": None}
        self._jobs_send, self._jobs = trio.open_memory_channel[dict[str, Any]](math.inf)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for job in self._jobs:
            try:
                await self._export(job)
            except (CammeshError, OSError, ValueError) as exc:
                self.status["error"] = str(exc)
            finally:
                self.status["running"] = False

    async def _export(self, job: dict[str, Any]) -> None:
        rt, card = self.runtime, self.runtime.card
        records = await rt.call(card.images)
        marks: dict[str, Marks] = await rt.call(card.all_marks)
        labels: dict[int, str] = await rt.call(card.color_labels)
        chosen = select(records, marks, labels, tagged=job["tagged"], rating=job["rating"],
                        label=job["label"])
        self.status.update(total=len(chosen), done=0, written=0, skipped=[], error=None)
        selection = Selection(chosen, marks, labels, node_runs=True)
        await trio.to_thread.run_sync(self.folder.mkdir, 0o777, True, True)

        def advance(name: str) -> None:
            self.status["done"] += 1

        written = await trio.to_thread.run_sync(lambda: export(
            self.folder, selection, self._fetch, template=self.template, advance=advance))
        self.status.update(written=len(written), skipped=[
            {"image_id": r.image_id, "name": r.name, "reason": why} for r, why in selection.skipped])

    def _fetch(self, record: ImageRecord, target: Path) -> None:
        """In the export's worker thread: read the original out through the node, verified."""
        from storage.export import link_new

        part = target.with_name(f".{target.name}.cammesh-part")
        hasher = hashlib.sha256()
        try:
            with open(part, "wb") as out:

                def sink(offset: int, data: bytes) -> None:
                    out.seek(offset)
                    out.write(data)
                    hasher.update(data)

                async def read_out() -> None:
                    with trio.fail_after(600):
                        await self.runtime.read_out(record.image_id, sink)

                try:
                    trio.from_thread.run(read_out)
                except (CammeshError, trio.TooSlowError) as exc:
                    raise MeshError(f"cannot read it out: {exc}") from exc
            if hasher.hexdigest() != record.image_id:
                raise MeshError("the read-out bytes do not hash to its id")
            link_new(part, target)
        finally:
            part.unlink(missing_ok=True)

    async def route(self, method: str, path: str, query: dict[str, str], receive: Any,
                    send: Any) -> bool:
        """``/api/export`` for ``Desk.routes``; True when the request was its own."""
        if path != "/api/export" or method not in ("GET", "POST"):
            return False
        if method == "POST":
            status, answer = self._start(await _body(receive))
        else:
            status, answer = 200, self.status
        body = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
        return True

    def _start(self, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        if body is None:
            return 400, {"error": "the request must be a JSON object"}
        if self.status["running"]:
            return 409, {"error": "an export is under way; wait for it to finish"}
        rating, label = body.get("rating"), body.get("label")
        if rating is not None and (type(rating) is not int or not 0 <= rating <= 5):
            return 400, {"error": "rating is a whole number from 0 to 5"}
        if label is not None and (not isinstance(label, str) or len(label) > 256):
            return 400, {"error": "label is a colour class's label or number"}
        self.status.update(running=True, done=0, total=0, error=None)
        self._jobs_send.send_nowait({"tagged": bool(body.get("tagged")), "rating": rating,
                                     "label": label})
        return 200, self.status


async def _body(receive: Any) -> dict[str, Any] | None:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if len(data) > MAX_BODY:
            return None
        if not message.get("more_body"):
            break
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
