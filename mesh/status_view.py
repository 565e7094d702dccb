"""The live status view of a running node (rich): its card, its peers and their queues, and
progress bars for the originals on their way in.

One function renders a ``status`` control answer, so ``cammesh node`` (in its own
process) and ``cammesh status --watch`` (through the control socket) show the same screen.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mesh.device_names import shown, shown_names
from storage.sizes import format_size


def render_status(status: dict[str, Any], *, names: dict[str, str] | None = None) -> RenderableType:
    """The screen for one ``{"op": "status"}`` answer; devices by name, with the short id only
    where two share a name (mesh/device_names.py)."""
    raw = dict(names or {})
    for peer in status.get("peers", []):
        if peer.get("name"):
            raw.setdefault(peer["peer_id"], peer["name"])
    names = {**shown_names(raw), **status.get("names", {})}
    head = Text.assemble(
        (f"{status['name']}", "bold"),
        f" ({status['role']}, {status['short_id']}) on port {status['port']}  ·  card ",
        f"{format_size(status['used'])} used of {format_size(status['capacity'])}, ",
        f"{format_size(status['free'])} free",
    )
    node = status.get("node", {})
    counts = Text(
        f"pictures: {node.get('images_local', 0)} here, {node.get('images_absent', 0)} thumbnail "
        f"only, {node.get('images_dispersed', 0)} dispersed; holding {node.get('held', 0)} "
        f"for others{_sealed(status.get('sealed_without_key'))}; {node.get('pulls_waiting', 0)} pulls and "
        f"{node.get('requests_waiting', 0)} requests waiting{_smaller(status.get('smaller'))}",
        style="dim",
    )
    peers = Table(box=box.SIMPLE_HEAD, title="peers", title_justify="left", expand=False)
    for column in ("peer", "state", "thumbs", "urgent", "dispersal", "background", "to send",
                   "in", "out"):
        peers.add_column(column, justify="left" if column in ("peer", "state") else "right")
    for peer in status.get("peers", []):
        q = peer.get("queues", {})
        label = shown(names, peer["peer_id"])
        peers.add_row(
            Text(label),
            "ready" if peer.get("ready") else "greeting",
            str(q.get("thumbnails", 0)),
            str(q.get("urgent", 0)),
            str(q.get("dispersal", 0)),
            str(q.get("background", 0)),
            format_size(q.get("bytes_pending", 0)),
            format_size(peer.get("bytes_in", 0)),
            format_size(peer.get("bytes_out", 0)),
        )
    if not status.get("peers"):
        peers.add_row(Text("no peer connected yet", style="dim"), "", "", "", "", "", "", "", "")
    parts: list[RenderableType] = [head, counts, peers]
    incoming = status.get("incoming", [])
    if incoming:
        bars = Table.grid(padding=(0, 1))
        bars.add_column()
        bars.add_column(width=30)
        bars.add_column(justify="right")
        for item in incoming:
            who = shown(names, item["peer"])
            total = max(1, int(item["total"]))
            what = "a smaller copy" if item["purpose"] == "smaller" else item["purpose"]
            bars.add_row(
                Text(f"{item['image_id'][:12]} ({what}) from {who}"),
                ProgressBar(total=total, completed=int(item["done"]), width=30),
                f"{format_size(item['done'])} / {format_size(item['total'])}",
            )
        parts.append(Text("originals coming in", style="bold"))
        parts.append(bars)
    return Group(*parts)


def _sealed(count: int | None) -> str:
    """Held originals this device cannot open: it holds them, sealed, and has no key."""
    return f" ({count} sealed, no key here: only their owners can read them)" if count else ""


def _smaller(counts: dict[str, int] | None) -> str:
    """The smaller copies on the card, said to be reduced copies, not originals."""
    if not counts or not counts.get("count"):
        return ""
    return (f"; {counts['count']} smaller copies (reduced, not originals: "
            f"{format_size(counts['bytes'])}, {counts['kept']} kept)")
