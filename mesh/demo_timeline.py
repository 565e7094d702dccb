"""The demo's timeline: node events and the demo's own steps as dated, readable lines.

Every line is printed as it happens (the demo's progress) and kept, so that the
story can be checked afterwards: each step that did not happen is a failure.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from rich.console import Console
from rich.text import Text

from protocol import events as ev
from protocol.errors import CammeshError
from storage.sizes import format_size

COLOURS = ("cyan", "magenta", "yellow", "green")
# Proposed to protocol/events.py (engineer H's report): the dispersal request as it leaves.
# Until it exists, a request line is written when its answer (accept or reject) comes back.
DISPERSAL_REQUESTED: type | None = getattr(ev, "DispersalRequested", None)


class DemoFailed(CammeshError):
    """A step of the demo's story did not happen; the message names the step."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the timeline: when (seconds since the start), where, what."""

    at: float
    device: str
    kind: str
    text: str
    image: str | None = None
    peer: str | None = None


class Timeline:
    """Collects and prints the story; ``wait_for`` lets a step wait on what it needs."""

    def __init__(self, console: Console, names: dict[str, str], labels: dict[str, str]) -> None:
        self.console = console
        self.names = names  # device id -> device name
        self.labels = labels  # image id -> picture label (its file name)
        self.entries: list[TimelineEntry] = []
        self.started = time.monotonic()
        self._changed = trio.Event()
        self._colours: dict[str, str] = {}
        self.waiting = "starting"  # what the story waits for now, for the progress line

    # --- writing ----------------------------------------------------------------------

    def name(self, device_id: str) -> str:
        return self.names.get(device_id, device_id[:12])

    def label(self, image_id: str) -> str:
        return self.labels.get(image_id, image_id[:12])

    def section(self, title: str) -> None:
        self.console.print(Text(f"── {title} ", style="bold"), markup=False, highlight=False)

    def add(self, device: str, kind: str, text: str, *, image: str | None = None,
            peer: str | None = None) -> TimelineEntry:
        entry = TimelineEntry(time.monotonic() - self.started, device, kind, text, image, peer)
        self.entries.append(entry)
        colour = self._colours.setdefault(device, COLOURS[len(self._colours) % len(COLOURS)])
        line = Text(f"{entry.at:+7.2f}s  ", style="dim")
        line.append(f"{device:<6}", style=f"bold {colour}")
        line.append(f" {text}")
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self._changed.set()
        self._changed = trio.Event()
        return entry

    def listener(self, device: str) -> Callable[[ev.NodeEvent], None]:
        """A Runtime.subscribe listener turning ``device``'s node events into lines."""

        def on_event(event: ev.NodeEvent) -> None:
            self._on_event(device, event)

        return on_event

    def _on_event(self, device: str, e: ev.NodeEvent) -> None:
        if isinstance(e, ev.PeerReady):
            other = e.hello.name
            if not self.find("linked", device=other, peer=device):  # one line per pair
                self.add(device, "linked", f"linked with {other} ({e.hello.role}): mutual TLS 1.3, "
                         "certificates pinned at pairing", peer=other)
        elif isinstance(e, ev.ThumbnailArrived):
            self.add(device, "thumbnail", f"thumbnail {self.label(e.image_id)} from {self.name(e.peer)}",
                     image=e.image_id, peer=self.name(e.peer))
        elif isinstance(e, ev.OriginalArrived):
            self.add(device, "original", f"original {self.label(e.image_id)} from {self.name(e.peer)} "
                     f"({e.purpose}), hash verified", image=e.image_id, peer=self.name(e.peer))
        elif isinstance(e, ev.TransferRefused):
            self.add(device, "not-served", f"{self.name(e.peer)} could not send "
                     f"{self.label(e.image_id)}: {e.reason}", image=e.image_id)
        elif isinstance(e, ev.RequestPending):
            self.add(device, "pending", f"request for {self.label(e.image_id)} waits: {e.reason}",
                     image=e.image_id)
        elif DISPERSAL_REQUESTED is not None and isinstance(e, DISPERSAL_REQUESTED):
            request: Any = e
            holder = self.name(request.holder)
            if not self.find("dispersal-request", device=device, image=request.image_id, peer=holder):
                self.asked(device, request.image_id, holder)
        elif isinstance(e, ev.DispersalAccepted | ev.DispersalRejected):
            holder = self.name(e.holder)
            if not self.find("dispersal-request", device=device, image=e.image_id, peer=holder):
                self.asked(device, e.image_id, holder)
            if isinstance(e, ev.DispersalAccepted):
                self.add(device, "accept", f"{holder} accepts {self.label(e.image_id)}, reserving "
                         f"{format_size(e.reservation)}; streaming it", image=e.image_id, peer=holder)
            else:
                self.add(device, "reject", f"{holder} rejects {self.label(e.image_id)}: {e.reason}; "
                         "on to the next candidate", image=e.image_id, peer=holder)
        elif isinstance(e, ev.HeldStored):
            self.add(device, "held", f"holds {self.label(e.image_id)} for {self.name(e.owner)}, "
                     "sealed with a key it never gets: written, fsynced, hash verified → stored",
                     image=e.image_id,
                     peer=self.name(e.owner))
        elif isinstance(e, ev.Dispersed):
            holders = ", ".join(self.name(h) for h in e.holders)
            self.add(device, "dispersed", f"{self.label(e.image_id)} on the dispersion list → "
                     f"{holders}; original freed, thumbnail and metadata kept",
                     image=e.image_id, peer=holders)
        elif isinstance(e, ev.CardFull):
            self.add(device, "card-full", e.message)
        elif isinstance(e, ev.Collected):
            self.add(device, "collected", f"{self.label(e.image_id)} is home from {self.name(e.holder)}, "
                     "hash verified: local again", image=e.image_id, peer=self.name(e.holder))
        elif isinstance(e, ev.CollectFailed):
            self.add(device, "collect-failed", f"cannot collect {self.label(e.image_id)}: {e.reason}",
                     image=e.image_id)
        elif isinstance(e, ev.Released):
            self.add(device, "released", f"released {self.label(e.image_id)}: "
                     f"{self.name(e.owner)} has it back", image=e.image_id, peer=self.name(e.owner))
        elif isinstance(e, ev.ProtocolViolation):
            self.add(device, "violation", f"{self.name(e.peer)} broke the protocol: {e.message}")

    def asked(self, device: str, image_id: str, holder: str) -> None:
        self.add(device, "dispersal-request", f"asks {holder} to hold {self.label(image_id)} "
                 "(dispersal request)", image=image_id, peer=holder)

    # --- reading ----------------------------------------------------------------------

    def find(self, kind: str, *, device: str | None = None, image: str | None = None,
             peer: str | None = None) -> list[TimelineEntry]:
        return [e for e in self.entries if e.kind == kind
                and (device is None or e.device == device)
                and (image is None or e.image == image)
                and (peer is None or e.peer == peer)]

    def change(self) -> trio.Event:
        """Set by the next line added: take it before a check, then wait on it."""
        return self._changed

    async def wait_for(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Wait until ``ready()``; DemoFailed naming ``what`` after ``timeout`` seconds."""
        self.waiting = what
        with trio.move_on_after(timeout):
            while not ready():
                await self._changed.wait()
            return
        raise DemoFailed(f"{what} did not happen within {timeout:g} s")

    def thumbnail_first(self) -> tuple[int, list[str]]:
        """(originals checked, problems): every original or held copy that reached a device
        must come after that device got its thumbnail (a device's own pictures excepted)."""
        checked, problems = 0, []
        for index, entry in enumerate(self.entries):
            if entry.kind not in ("original", "held", "readout") or entry.image is None:
                continue
            checked += 1
            before = [e for e in self.entries[:index]
                      if e.kind == "thumbnail" and e.device == entry.device and e.image == entry.image]
            if not before:
                problems.append(f"{entry.device} got {self.label(entry.image)}'s original "
                                "before its thumbnail")
        return checked, problems


class FoundByMdns(logging.Handler):
    """Turns the node's "found PEER at HOST:PORT" log records into timeline lines, once per device."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__(logging.INFO)
        self.timeline = timeline

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) != "PeerFound":
            return
        fields = getattr(record, "fields", {})
        name = self.timeline.name(fields.get("peer", ""))
        if not self.timeline.find("found", device=name):
            self.timeline.add(name, "found", f"found by mDNS (_cammesh._tcp.local.) at "
                              f"{fields.get('host')}:{fields.get('port')}")


def percent(used: int, capacity: int) -> str:
    return f"{math.floor(100 * used / capacity)}%"
