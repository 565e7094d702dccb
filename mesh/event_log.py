"""What people see of node events: one log line each, and the progress of incoming transfers.

A log line has short ids for people and every field for ``--log-json``; the progress
(``Runtime.incoming``) is what the status view draws its bars from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mesh.identity import short_id_of
from protocol import events as ev

log = logging.getLogger("cammesh.node")


@dataclass(frozen=True, slots=True)
class InboundTransfer:
    """How far an original (or smaller copy) on its way to us has come, for progress bars.

    Not ``protocol.store.Incoming``, which names what kind of stream a partial belongs to."""

    peer: str
    image_id: str
    purpose: str
    done: int
    total: int


def note_event(incoming: dict[tuple[str, str, str], InboundTransfer], event: ev.NodeEvent) -> None:
    """Log the event (all but the chattiest) and keep incoming progress for the status view."""
    if isinstance(event, ev.TransferProgress):
        key = (event.peer, event.image_id, str(event.purpose))
        if key not in incoming:
            # The first chunk of a stream says where it started: a resumed transfer
            # shows an offset past zero here (the partial the card kept).
            log_event(event, name="TransferStarted")
        incoming[key] = InboundTransfer(
            event.peer, event.image_id, str(event.purpose), event.done, event.total
        )
        return
    if isinstance(event, ev.ReadOutChunk):
        return
    if isinstance(event, ev.OriginalArrived | ev.TransferRefused):
        incoming.pop((event.peer, event.image_id, str(event.purpose)), None)
    elif isinstance(
        event, ev.HeldStored | ev.Collected | ev.ReadOutDone | ev.ReadOutFailed
    ):
        # Streams that end in these (held copies, collections, relayed read-outs) send
        # no OriginalArrived: without this they would show at 100 % for ever.
        for key in [k for k in incoming if k[1] == event.image_id]:
            del incoming[key]
    elif isinstance(event, ev.PeerGone):
        for key in [k for k in incoming if k[0] == event.peer]:
            del incoming[key]
    log_event(event)


def event_fields(event: ev.NodeEvent) -> dict[str, Any]:
    """An event's fields as JSON values (ids in full, bytes as their length)."""
    out: dict[str, Any] = {}
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if isinstance(value, bytes | bytearray):
            value = len(value)
        elif hasattr(value, "device_id") and hasattr(value, "name"):  # a Hello
            value = {"name": value.name, "role": str(value.role)}
        elif not isinstance(value, str | int | float | bool | type(None) | tuple | list):
            value = str(value)
        out[name] = value
    return out


def _shortened(value: object) -> object:
    """Device and image ids in their short human form; anything else, even a peer's
    64-character text that merely looks like an id, as it is."""
    if isinstance(value, str) and len(value) == 64:
        try:
            return short_id_of(value)
        except ValueError:  # not hex: some other text of that length
            return value
    return value


def log_event(event: ev.NodeEvent, *, name: str | None = None) -> None:
    """What people see of node events: one log line each, and the progress of incoming transfers.

A log line has short ids for people and every field for ``--log-json``; the progress
(``Runtime.incoming``) is what the status view draws its bars from.
"""
    name = name or type(event).__name__
    fields = event_fields(event)
    shown = " ".join(f"{k}={_shortened(v)}" for k, v in fields.items())
    log.info("%s %s", name, shown, extra={"event": name, "fields": fields})
