"""``cammesh node``: one device on the network, and the control requests it answers.

Wires the runtime (TLS, pumps, timers) to discovery, the watched folder and
the local control socket, all in one trio nursery so that stopping the node
(Ctrl-C, SIGTERM) closes every part of it cleanly.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from mesh.control import (
    Note,
    check_smaller_request,
    image_json,
    sealed_without_key,
    serve_control,
    smaller_json,
)
from mesh.errors import MeshError, ReadOutError
from mesh.identity import short_id_of
from mesh.runtime import Address, Runtime
from protocol import events as ev
from protocol.outcomes import Failed, Pending, Requested
from protocol.store import Where
from storage.importer import Imported, Skipped

if TYPE_CHECKING:
    from mesh.ftp import FtpDoor, FtpSettings

log = logging.getLogger("cammesh.node")

DIAL_GRACE_S = 0.3  # a peer with the smaller id finds us and dials within this, as a rule


def jsonable(value: Any) -> Any:
    """Node status objects (dataclasses, enums, mappings) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return value


def outcome_json(outcome: Any) -> dict[str, Any]:
    """A node input's outcome (protocol/outcomes.py) as JSON: ``{"outcome": "requested", ...}``
    with its fields, the picture's ``image_id`` left to the answer's own ``id``."""
    name = type(outcome).__name__
    kind = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    fields = {k: v for k, v in jsonable(outcome).items() if k != "image_id"}
    return {"outcome": kind, **fields}


class Controller:
    """Answers the control API for one running node."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ftp: FtpDoor | None = None  # the FTP door for cameras, when the node has one

    async def handle(self, request: dict[str, Any], note: Note | None = None) -> dict[str, Any]:
        """Answer one request; ``note`` may tell its client how a long one is going."""
        op = request.get("op")
        method = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if method is None:
            raise MeshError(f"unknown control request {op!r}")
        answer: dict[str, Any] = await method(request, note or _no_note)
        return {"ok": True, **answer}

    async def _resolve(self, request: dict[str, Any]) -> str:
        prefix = request.get("id")
        if not isinstance(prefix, str) or not prefix:
            raise MeshError("the request names no picture id")
        image_id: str = await self.runtime.call(self.runtime.card.resolve, prefix)
        return image_id

    async def op_status(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        rt = self.runtime
        usage = await rt.call(rt.card.usage)
        status = await rt.call(rt.node.status)
        smaller = list((await rt.call(rt.card.smaller_details)).values())
        return {
            "device_id": rt.identity.device_id,
            "short_id": rt.identity.short_id,
            "name": rt.config.name,
            "role": str(rt.config.role),
            "port": rt.port,
            "capacity": usage.capacity,
            "used": usage.used,
            "reserved": usage.reserved,
            "free": usage.free,
            "node": jsonable(status),
            # Reduced copies received instead of originals (FIG. 10, S64-S65; issue 17).
            "smaller": {"count": len(smaller), "bytes": sum(c.size for c in smaller),
                        "kept": sum(c.kept for c in smaller)},
            "sealed_without_key": await rt.call(sealed_without_key, rt.card),  # issue 17
            # Device id -> the name a person reads, with the short id only where two collide.
            "names": self.names(),
            "links": {
                peer: {"bytes_in": link.bytes_in, "bytes_out": link.bytes_out, "since": link.since}
                for peer, link in rt.links.items()
            },
            "peers": [
                {**jsonable(view), "short_id": short_id_of(peer), "connected": rt.connected_to(peer)}
                for peer, view in (await rt.call(rt.node.peers)).items()
            ],
            "incoming": [jsonable(item) for item in rt.incoming.values()],
            "rate_limit": rt.rate_limit,
            "now": rt.now(),
            "ftp": None if self.ftp is None else {"port": self.ftp.port,
                                                  "cameras": self.ftp.status()},
        }

    def names(self) -> dict[str, str]:
        from mesh.device_names import shown_names

        rt = self.runtime
        names = {rt.identity.device_id: rt.config.name}
        for pin in getattr(rt.membership(), "peers", ()):
            names[pin.device_id] = pin.name
        return shown_names(names)

    async def op_peers(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        rt = self.runtime
        peers = await rt.call(rt.node.peers)
        members = rt.membership()
        known = []
        for pin in getattr(members, "peers", ()):
            known.append(
                {
                    "device_id": pin.device_id,
                    "name": pin.name,
                    "role": pin.role,
                    "connected": rt.connected_to(pin.device_id),
                    "view": jsonable(peers.get(pin.device_id)),
                }
            )
        return {"peers": known}

    async def op_ls(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        card = self.runtime.card
        records = await self.runtime.call(card.images)
        sources = await self.runtime.call(card.thumbnail_sources)
        usage = await self.runtime.call(card.usage)
        smaller = await self.runtime.call(card.smaller_details)
        return {
            "images": [{**image_json(r, sources.get(r.image_id)),
                        "smaller": smaller_json(smaller.get(r.image_id))} for r in records],
            "used": usage.used,
            "free": usage.free,
        }

    async def op_import(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        """Import files named by absolute paths, as captures (``cammesh import`` on a busy card)."""
        paths = request.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise MeshError("import needs a list of paths")
        if not all(Path(p).is_absolute() for p in paths):
            raise MeshError("import needs absolute paths (the node may run in another folder)")
        async def progress(done: int, total: int, outcome: Imported | Skipped) -> None:
            # One note per file: the summary below stays the answer.
            what = "imported" if isinstance(outcome, Imported) else (
                "duplicate" if outcome.image_id is not None else "rejected")
            await note(f"{done}/{total} {what}: {outcome.path}")

        summary = await self.runtime.import_pictures([Path(p) for p in paths], progress=progress)
        return {"summary": jsonable(summary)}

    async def op_request(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        rt = self.runtime
        max_side, quality = check_smaller_request(request.get("max_side"), request.get("quality"))
        image_id = await self._resolve(request)
        outcome = await rt.call(
            rt.node.request, image_id, rt.now(), max_side=max_side, quality=quality
        )
        answer = {"id": image_id, **outcome_json(outcome)}
        if isinstance(outcome, Requested):
            answer["peer_name"] = self.names().get(outcome.peer, short_id_of(outcome.peer))
        return answer

    async def op_keep(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        """Keep a smaller copy after its original arrives, or (``keep`` false) let it go."""
        rt = self.runtime
        image_id = await self._resolve(request)
        kept = await rt.call(rt.card.keep_smaller, image_id, bool(request.get("keep", True)))
        return {"id": image_id, "smaller": smaller_json(kept)}

    async def op_refuse(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        rt = self.runtime
        image_id = await self._resolve(request)
        outcome = await rt.call(rt.node.refuse, image_id, rt.now())
        return {"id": image_id, **outcome_json(outcome)}

    async def op_collect(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        """Start collections; the answer names those refused now and those waiting for a holder."""
        rt = self.runtime
        if request.get("all"):
            records = await rt.call(rt.card.images)
            ids = [r.image_id for r in records if r.where is Where.DISPERSED]
        else:
            ids = [await self._resolve({"id": i}) for i in request.get("ids", [])]
        outcomes = await rt.call(rt.node.collect, ids, rt.now())
        refused = {o.image_id: o.reason for o in outcomes if isinstance(o, Failed)}
        pending = {o.image_id: o.reason for o in outcomes if isinstance(o, Pending)}
        return {
            "ids": [i for i in ids if i not in refused],
            "refused": [{"id": i, "reason": r} for i, r in refused.items()],
            "pending": [{"id": i, "reason": r} for i, r in pending.items()],
        }

    async def op_repair(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        """A holder is gone for good: re-replicate what it held, waiting up to ``timeout`` s."""
        rt = self.runtime
        entries = await rt.call(rt.card.dispersion_list)
        holder, name = _resolve_holder(
            rt.membership(), {e.holder for e in entries}, str(request.get("holder") or "")
        )
        repaired: dict[str, str] = {}
        progress = trio.Event()

        def listener(event: ev.NodeEvent) -> None:
            # The new holders' Stored come later, as events: the call's outcome cannot say.
            nonlocal progress
            if isinstance(event, ev.Repaired):
                repaired.setdefault(event.image_id, event.holder)
                progress.set()
                progress = trio.Event()

        unsubscribe = rt.subscribe(listener)  # before the call: no Repaired is missed
        try:
            connected = rt.connected_to(holder)
            outcome = await rt.call(rt.node.repair, holder, rt.now())
            copying = set(outcome.copying)
            with trio.move_on_after(float(request.get("timeout", 60))):
                while copying - set(repaired):
                    await progress.wait()
        finally:
            unsubscribe()
        names = {p.device_id: p.name for p in rt.membership().peers}
        return {
            "holder": holder,
            "name": name,
            "connected": connected,
            "repaired": [
                {"id": i, "holder": h, "holder_name": names.get(h, short_id_of(h))}
                for i, h in sorted(repaired.items()) if i in copying
            ],
            "failed": [{"id": f.image_id, "reason": f.reason} for f in outcome.failed],
            "copying": sorted(copying - set(repaired)),
            "unlisted": list(outcome.unlisted),
        }

    async def op_get(self, request: dict[str, Any], note: Note) -> dict[str, Any]:
        """Write a picture's original to ``path``, reading it out from the mesh if need be."""
        rt = self.runtime
        image_id = await self._resolve(request)
        target = Path(str(request.get("path", "")))
        if not target.is_absolute():
            raise MeshError("get needs an absolute output path")
        wait_s = float(request.get("wait") or 0)
        if wait_s < 0:
            raise MeshError("--wait needs a number of seconds, 0 or more")
        told = ""

        async def pending(reason: str) -> None:
            nonlocal told
            if reason != told:  # retried every few seconds: say each new reason once
                told = reason
                await note(f"waiting up to {wait_s:g} s: {reason}")

        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".cammesh-get-")
        hasher = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:

                def sink(offset: int, data: bytes) -> None:
                    out.seek(offset)
                    out.write(data)
                    hasher.update(data)

                try:
                    with trio.fail_after(float(request.get("timeout", 300)) + wait_s):
                        digest = await rt.read_out(
                            image_id, sink, wait_s=wait_s or None, on_pending=pending
                        )
                except trio.TooSlowError as exc:
                    raise MeshError("the read-out took too long; is the holder online?") from exc
                except ReadOutError as exc:
                    raise MeshError(f"cannot read {image_id[:12]} out: {exc}") from exc
            if hasher.hexdigest() != image_id or digest != image_id:
                raise MeshError("the read-out bytes do not hash to the picture id; nothing written")
            os.replace(tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return {"id": image_id, "path": str(target)}


async def _no_note(text: str) -> None:
    """Notes for a caller that takes none (the live view)."""


def _resolve_holder(members: Any, holders: set[str], who: str) -> tuple[str, str]:
    """(device id, name) of the one paired device or listed holder ``who`` names.

    ``who`` is a device name or an id prefix; MeshError when it names none or several.
    """
    if not who:
        raise MeshError("name the holder: its device name or an id prefix (see `cammesh peers`)")
    names = {p.device_id: p.name for p in getattr(members, "peers", ())}
    known = set(names) | holders
    found = {d for d in known if d.startswith(who.lower())}
    found |= {d for d, n in names.items() if n.casefold() == who.casefold()}
    if len(found) != 1:
        raise MeshError(
            f"{who!r} names {len(found)} devices, not one; give its name or more of its id "
            "(see `cammesh peers`)"
        )
    device = found.pop()
    return device, names.get(device, short_id_of(device))


async def run_node(
    runtime: Runtime,
    *,
    discovery: bool = True,
    interface: str | None = None,
    watch: Path | None = None,
    watch_mode: str = "auto",
    ftp: FtpSettings | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one device until cancelled; ``task_status.started`` gets its TCP port."""
    controller = Controller(runtime)
    async with trio.open_nursery() as nursery:
        port: int = await nursery.start(runtime.run)
        if ftp is not None:
            from mesh.ftp import serve_ftp

            controller.ftp = await nursery.start(serve_ftp, runtime, ftp)
        await nursery.start(serve_control, runtime.card_path, controller.handle)
        if discovery:
            nursery.start_soon(_discover, runtime, port, interface)
        if watch is not None:
            nursery.start_soon(_watch, runtime, watch, watch_mode)
        task_status.started(port)


async def _discover(runtime: Runtime, port: int, interface: str | None) -> None:
    """Dial every device of our mesh that discovery finds (the smaller id dials).

    A device found again at another address (it restarted on a new port, or moved
    network) gets a new dialer; a device that withdrew its advertisement loses its dialer,
    though a link already up stays until it breaks.
    """
    from mesh.discovery import PeerFound, PeerLost, open_discovery

    me = runtime.identity.device_id
    dialers: dict[str, tuple[Address, trio.CancelScope]] = {}
    membership = runtime.membership()
    async with (
        open_discovery(
            me,
            membership.mesh_hash,
            str(runtime.config.role),
            port,
            interfaces=[interface] if interface else None,
        ) as disc,
        trio.open_nursery() as nursery,
    ):
        async for event in disc.events():
            if isinstance(event, PeerFound):
                address = Address(event.host, event.port)
                log.info("found %s at %s", short_id_of(event.device_id), address,
                         extra={"event": "PeerFound", "fields": {
                             "peer": event.device_id, "host": event.host, "port": event.port}})
                if me > event.device_id:  # it dials us; if it has not soon, we dial once
                    nursery.start_soon(_dial_unless_dialled, runtime, address, event.device_id)
                    continue
                current = dialers.get(event.device_id)
                if current is not None and current[0] == address:
                    continue
                if current is not None:
                    current[1].cancel()
                scope = trio.CancelScope()
                dialers[event.device_id] = (address, scope)
                nursery.start_soon(_dial_in_scope, runtime, scope, address, event.device_id)
            elif (
                isinstance(event, PeerLost)
                and event.device_id in dialers
                and not runtime.connected_to(event.device_id)  # a live link stays up
            ):
                dialers.pop(event.device_id)[1].cancel()


async def _dial_unless_dialled(runtime: Runtime, address: Address, peer: str) -> None:
    """Dial a peer with the larger id once, when it has not dialled us within DIAL_GRACE_S.

    The smaller id dials, once its browser finds us; its first query is a QU question
    (RFC 6762 section 5.4), and the unicast answer to port 5353 reaches only one of the
    responders sharing a host (another node, avahi): it would find us only with its next
    query, a second later.  We saw its announcement, so we make the link; its dialer then
    finds the link up and waits, and two dials at once keep the one the smaller id began.
    """
    await trio.sleep(DIAL_GRACE_S)
    if not runtime.connected_to(peer):
        log.info("%s has not dialled us; dialling it at %s", short_id_of(peer), address)
        await runtime.dial_once(address, peer)


async def _dial_in_scope(
    runtime: Runtime, scope: trio.CancelScope, address: Address, peer: str
) -> None:
    with scope:
        await runtime.dial_forever(address, peer)


async def _watch(runtime: Runtime, folder: Path, mode: str) -> None:
    from mesh.watch import watch_folder

    async def imported(paths: Sequence[Path]) -> None:
        await runtime.import_pictures(paths)

    await watch_folder(folder, imported, mode=mode)
