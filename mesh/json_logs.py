"""Structured logs: one JSON object a line, shared by the node's CLI and its FTP child.

Its own module so that the FTP door can format like the node without importing the command
line (which imports the daemon, which starts the FTP door: an import circle).
"""

from __future__ import annotations

import json
import logging
from typing import Any


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line; node events carry ``event`` and every field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"t": record.created, "level": record.levelname.lower(),
                               "logger": record.name, "msg": record.getMessage()}
        event = getattr(record, "event", None)
        if event is not None:
            doc["event"] = event
            doc.update(getattr(record, "fields", {}))
        return json.dumps(doc, default=str)
