"""One log line per node event: short ids for people, every field for ``--log-json``."""

from __future__ import annotations

import logging
from typing import Any

from mesh.identity import short_id_of
from protocol import events as ev

log = logging.getLogger("cammesh.node")


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
    """One log line per node event: short ids for people, every field for ``--log-json``."""
    name = name or type(event).__name__
    fields = event_fields(event)
    shown = " ".join(f"{k}={_shortened(v)}" for k, v in fields.items())
    log.info("%s %s", name, shown, extra={"event": name, "fields": fields})
