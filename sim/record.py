"""What a run records: the pictures it captured, its metrics, and the trace's text of an event.

The pictures are the ground truth the invariants (sim/invariants.py) judge by; the metrics
are what the report (sim/report.py) prints, with counters that prove rare paths ran; and
``canon`` gives every node event one text in any process, for the trace hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Any

from sim.agenda import KIND_NAMES


@dataclass(slots=True)
class Picture:
    """A captured picture, as the world knows it (the ground truth for invariants)."""

    number: int
    camera: int
    image_id: str  # the SHA-256 of its bytes: all a check needs (the bytes are not kept)
    size: int
    captured_at: float  # virtual time


@dataclass(slots=True)
class Metrics:
    """What happened, for the report; ``counters`` prove that rare paths ran."""

    counters: dict[str, int] = field(default_factory=dict)
    thumbnail_latency: list[float] = field(default_factory=list)
    thumbnail_arrivals: list[tuple[float, int, int]] = field(default_factory=list)  # t, dev, picture
    original_arrivals: list[tuple[float, int, int]] = field(default_factory=list)
    bytes_moved: int = 0
    frames: int = 0
    events: int = 0  # the world's own timed events processed (cancelled timers not counted)
    by_kind: list[int] = field(default_factory=lambda: [0] * len(KIND_NAMES))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


_DATACLASS_FIELDS: dict[type, tuple[str, ...]] = {}  # field names of event types seen so far


def canon(value: Any) -> str:
    """A process-independent text form of an event field (sets sorted, bytes by length+hash)."""
    kind = type(value)
    if kind is str:  # the common cases first; the text is the same as below
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    names = _DATACLASS_FIELDS.get(kind)
    if names is not None:
        return kind.__name__ + "(" + ",".join([canon(getattr(value, n)) for n in names]) + ")"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)}:{hashlib.sha256(value).hexdigest()[:16]}>"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(canon(v) for v in value)) + "}"
    if isinstance(value, tuple | list):
        return "(" + ",".join(canon(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{canon(k)}:{canon(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, float):
        return repr(value)
    if hasattr(value, "__dataclass_fields__"):
        _DATACLASS_FIELDS[kind] = tuple(f.name for f in fields(value))
        return canon(value)
    return str(value)
