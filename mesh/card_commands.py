"""The card commands: ``init``, ``import``, ``ls`` and ``thumb`` (``demo`` is mesh/demo.py)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Each command imports what it uses: `cammesh import` into a running node only talks to its
# control socket, and starts in a blink (issue 13).
if TYPE_CHECKING:
    from rich.console import Console

    from mesh.cli import Register
    from protocol.store import DispersionEntry, HeldRecord, ImageRecord, Usage
    from storage.card import Card
    from storage.card_smaller import SmallerCopy
    from storage.importer import ImportSummary
    from storage.marks import Stamped

Subparsers = Any  # argparse's _SubParsersAction, whose type is private
LONG_IMPORT = 20  # files; fewer import in a blink and need no progress bar


def shown(text: str) -> str:
    """Text safe to print: control characters (a hostile file name's) made visible."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- init ------------------------------------------------------------------------------


def add_init(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "init", help="make a folder into a new card with its own device identity",
        description="Create a card in CARD: an empty catalog, a device identity (key pair "
        "and certificate) and a capacity, the byte budget its pictures may use.",
    )
    p.add_argument("card", type=Path, metavar="CARD", help="the card folder (created if missing)")
    p.add_argument("--name", required=True, help="this device's name, shown to peers")
    p.add_argument("--capacity", required=True, metavar="SIZE", help="e.g. 32GB, 512MiB or bytes")
    p.add_argument("--role", choices=("camera", "desk"), default="camera", help="default: camera")
    p.add_argument("--reserve", metavar="SIZE", help="room kept free (default 1%%, at most 256 MiB)")
    p.set_defaults(run=run_init)


def init_card(card_dir: Path, *, name: str, capacity: int, role: str, reserve: int | None) -> Card:
    """A new card with a new identity; the identity is made first since the card needs its id."""
    from mesh.identity import Identity
    from storage.card import Card, check_settings
    from storage.catalog import CATALOG_NAME
    from storage.errors import CardExists

    if (card_dir / CATALOG_NAME).exists():
        raise CardExists(f"{card_dir} already holds a card; choose another folder")
    check_settings(name=name, capacity=capacity, role=role, reserve=reserve)  # before any file
    identity = Identity.create(card_dir, name=name)
    return Card.create(
        card_dir, device_id=identity.device_id, name=name, capacity=capacity, role=role, reserve=reserve
    )


def run_init(args: argparse.Namespace) -> int:
    from storage.sizes import format_size, parse_size

    capacity = parse_size(args.capacity)
    reserve = None if args.reserve is None else parse_size(args.reserve)
    with init_card(args.card, name=args.name, capacity=capacity, role=args.role, reserve=reserve) as card:
        print(
            f"card {shown(card.name)!r} ({card.role}) ready in {args.card}: device {card.device_id[:16]}, "
            f"capacity {format_size(card.capacity)}, reserve {format_size(card.reserve_bytes)}"
        )
    return 0


# --- import ----------------------------------------------------------------------------


def add_import(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "import", help="copy pictures (files or folders) onto a card",
        description="Import files into CARD: folders are recursed, a file already on the card "
        "(same bytes) is skipped, and a file that cannot be imported is listed with the reason. "
        "When a node runs on CARD, the node imports them, as captures. "
        "Exits 1 only when not one file could be read.",
    )
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="files or folders")
    p.set_defaults(run=run_import)


def import_with_progress(card: Card, paths: list[Path], console: Console) -> ImportSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from storage.importer import import_paths

    progress = Progress(
        TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )
    task = None

    def advance(done: int, total: int, path: Path) -> None:
        nonlocal task
        if total < LONG_IMPORT:
            return
        if task is None:
            progress.start()
            task = progress.add_task("import", total=total)
        progress.update(task, completed=done)

    try:
        return import_paths(card, paths, now=time.time(), progress=advance)
    finally:
        if task is not None:
            progress.stop()


def import_via_node(card: Path, paths: list[Path]) -> int:
    """``cammesh import`` on a card a running node holds: the node imports, as captures.

    Raises NodeNotRunning, having sent nothing, when no node answers on the card.
    """
    from mesh.control import ask

    def progress(text: str) -> None:  # "3/20 imported: /path", one per file as it lands
        print(f"\r{text[:120]:<120}", end="", file=sys.stderr, flush=True)

    tty = sys.stderr.isatty()
    answer = ask(card, {"op": "import", "paths": [str(p.resolve()) for p in paths]},
                 on_note=progress if tty else None)
    if tty:
        print(file=sys.stderr)
    from storage.sizes import format_size

    summary = answer["summary"]
    size = sum(i["size"] for i in summary["imported"])
    print(f"imported {len(summary['imported'])} ({format_size(size)}) through the running node, "
          f"duplicates {len(summary['duplicates'])}, rejected {len(summary['rejected'])}")
    for skip in summary["rejected"]:
        print(f"  rejected: {skip['path']}: {skip['reason']}")
    nothing = not summary["imported"] and not summary["duplicates"] and summary["rejected"]
    return 1 if nothing else 0


def print_summary(summary: ImportSummary, console: Console) -> None:
    from storage.sizes import format_size

    size = sum(i.size for i in summary.imported)
    console.print(
        f"imported {len(summary.imported)} ({format_size(size)}), "
        f"duplicates {len(summary.duplicates)}, rejected {len(summary.rejected)}",
        markup=False, highlight=False,
    )
    for item in summary.imported:
        if item.thumbnail_source == "placeholder":
            console.print(f"  placeholder thumbnail: {shown(item.path)}: {shown(item.reason or '')}",
                          markup=False, highlight=False)
    for skip in summary.rejected:
        console.print(f"  rejected: {shown(skip.path)}: {shown(skip.reason)}", markup=False, highlight=False)


def run_import(args: argparse.Namespace) -> int:
    from mesh.control import NodeNotRunning

    # A running node holds the card: it imports them itself, as captures, so that its peers
    # get the thumbnails and a card above its mark disperses (issue 5).  Asked first, before
    # anything heavy is imported: the first thumbnail waits for this request (issue 13).
    try:
        return import_via_node(args.card, args.paths)
    except NodeNotRunning:
        pass
    from rich.console import Console

    from storage.card import Card
    from storage.errors import CardBusy

    console = Console(highlight=False, soft_wrap=True)  # long paths stay on one line
    try:
        card = Card.open(args.card)
    except CardBusy as busy:
        raise busy from None  # another import holds it, not a node (it did not answer)
    with card:
        summary = import_with_progress(card, args.paths, console)
    print_summary(summary, console)
    return 1 if summary.nothing_read else 0


# --- ls --------------------------------------------------------------------------------


def add_ls(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "ls", help="list the pictures on a card, or the originals it holds for others",
        description="One row per picture: id prefix, name, size, capture time, where the "
        "original is (local, dispersed — with the holders its dispersion list names — or absent) "
        "and when its thumbnail and original arrived. With --held: the originals this card "
        "holds for other devices. Works while a node runs on the card (it reads the catalog).",
    )
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("--json", action="store_true", help="every field of every picture, as JSON")
    p.add_argument("--held", action="store_true",
                   help="list the originals held for other devices (kept apart from this card's own)")
    p.set_defaults(run=run_ls)


def as_json(record: ImageRecord, thumbnail_source: str | None,
            holders: list[DispersionEntry] | None = None,
            marks: Mapping[str, Stamped] | None = None,
            labels: Mapping[int, str] | None = None,
            smaller: SmallerCopy | None = None,
            names: Mapping[str, str] | None = None) -> dict[str, Any]:
    from mesh.control import image_json, smaller_json
    from mesh.device_names import shown
    from storage.marks import DEFAULT_COLOR_LABELS, marks_of

    shown_marks = marks_of(marks or {})
    names = names or {}
    return {
        **image_json(record, thumbnail_source),
        "origin_name": shown(names, record.origin),
        # A reduced copy received instead of (or kept beside) the original (FIG. 10, S64-S65).
        "smaller": smaller_json(smaller),
        # The dispersion list's entries for this picture: who holds (or is getting) it.
        "holders": [{"holder": e.holder, "holder_name": shown(names, e.holder),
                     "state": e.state.value, "updated_at": e.updated_at}
                    for e in holders or ()],
        # The editor's marks (issue 19), each field's last change as (time, device id).
        "marks": shown_marks.as_json(),
        "color_label": None if shown_marks.color is None
        else (labels or DEFAULT_COLOR_LABELS)[shown_marks.color],
        "marks_changed": {name: {"at": m.at, "device": m.device}
                          for name, m in sorted((marks or {}).items())},
    }


def held_json(record: HeldRecord, names: Mapping[str, str] | None = None, *,
              picture: ImageRecord | None = None) -> dict[str, Any]:
    """One held original; ``picture``: its catalog row here (its thumbnail), if any."""
    from mesh.control import sealed_no_key
    from mesh.device_names import shown

    return {"image_id": record.image_id, "owner": record.owner,
            "owner_name": shown(names or {}, record.owner), "size": record.size,
            "stored_at": record.stored_at,
            # Sealed for its owner and no key here: only the owner can read it (issue 17).
            "sealed_without_key": sealed_no_key(record, picture)}


def held_form(record: HeldRecord, picture: ImageRecord | None) -> str:
    """How a held original is kept, as `ls --held` says it."""
    from mesh.control import sealed_no_key

    if record.digest == record.image_id:
        return "as it is"  # held before sealing (issue 7)
    return "sealed, no key here" if sealed_no_key(record, picture) else "sealed, key here"


@dataclass(frozen=True, slots=True)
class Listing:
    """What `ls` shows of a card: pictures, their dispersion entries, held originals, room."""

    records: list[ImageRecord]
    sources: dict[str, str | None]
    dispersion: list[DispersionEntry]
    held: list[HeldRecord]
    usage: Usage | None  # None when a running node holds the card
    marks: dict[str, dict[str, Stamped]] = field(default_factory=dict)  # image id -> field -> mark
    labels: dict[int, str] = field(default_factory=dict)  # colour class -> label
    smaller: dict[str, SmallerCopy] = field(default_factory=dict)  # smaller copies received
    names: dict[str, str] = field(default_factory=dict)  # device id -> shown name (issue 17)


def read_listing(card_dir: Path) -> Listing:
    """Open the card; when a running node holds it, read a consistent snapshot of its catalog."""
    from mesh.device_names import card_names
    from storage.card import Card
    from storage.card_smaller import smaller_details
    from storage.catalog import CATALOG_NAME, SqliteCatalog
    from storage.errors import CardBusy
    from storage.marks import labels_of

    try:
        with Card.open(card_dir) as card:
            return Listing(card.images(), card.thumbnail_sources(), card.dispersion_list(),
                           card.held_originals(), card.usage(), card.all_stamped_marks(),
                           card.color_labels(), card.smaller_details(),
                           card_names(card_dir, me=card.device_id, my_name=card.name))
    except CardBusy:
        pass
    # SQLite in WAL mode lets this reader see the last commit while the node keeps writing.
    catalog = SqliteCatalog(card_dir / CATALOG_NAME)
    try:
        with catalog.transaction():
            settings = catalog.settings()
            return Listing(catalog.images(), catalog.thumbnail_sources(),
                           catalog.dispersion_list(), catalog.held_originals(), None,
                           catalog.all_stamped_marks(), labels_of(
                               (n, str(s.value)) for n, s in catalog.color_labels().items()),
                           smaller_details(catalog),
                           card_names(card_dir, me=settings["device_id"], my_name=settings["name"]))
    finally:
        catalog.close()


def where_text(record: ImageRecord, holders: list[DispersionEntry], smaller: SmallerCopy | None,
               names: Mapping[str, str]) -> str:
    """The `original` cell of `ls`: where it is, who holds it (by name), and a smaller copy."""
    from mesh.device_names import shown
    from storage.sizes import format_size

    where = record.where.value
    if holders:
        where += " → " + ", ".join(shown(names, e.holder) + ("" if e.state.value == "stored"
                                                            else f" ({e.state.value})")
                                   for e in holders)
    if smaller is not None:
        kept = ", kept" if smaller.kept else ""
        where += f" · smaller copy ({format_size(smaller.size)}{kept})"
    return where


def run_ls(args: argparse.Namespace) -> int:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from storage.sizes import format_size

    listing = read_listing(args.card)
    if args.held:
        return print_held(listing, args.json)
    by_image: dict[str, list[DispersionEntry]] = {}
    for entry in listing.dispersion:
        by_image.setdefault(entry.image_id, []).append(entry)
    records = listing.records
    if args.json:
        json.dump([as_json(r, listing.sources.get(r.image_id), by_image.get(r.image_id),
                           listing.marks.get(r.image_id), listing.labels,
                           listing.smaller.get(r.image_id), listing.names)
                   for r in records], sys.stdout, indent=1)
        print()
        return 0
    usage = listing.usage
    room = (f"{format_size(usage.used)} used, {format_size(usage.free)} free" if usage is not None
            else "a running node holds the card")
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(records)} pictures, {room}")
    for column in ("id", "name", "size", "captured", "original", "thumbnail at", "original at"):
        table.add_column(column, no_wrap=column != "name", min_width=12 if column == "name" else None)
    for r in records:
        where = where_text(r, by_image.get(r.image_id, []), listing.smaller.get(r.image_id),
                           listing.names)
        table.add_row(
            r.image_id[:12], Text(shown(r.name)), format_size(r.size), when(r.capture_time),
            Text(where), when(r.thumbnail_at) if r.thumbnail_at else "here", when(r.original_at),
        )
    console().print(table)
    return 0


def print_held(listing: Listing, as_json_out: bool) -> int:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from mesh.device_names import shown
    from storage.sizes import format_size

    rows = {r.image_id: r for r in listing.records}
    if as_json_out:
        json.dump([held_json(h, listing.names, picture=rows.get(h.image_id))
                   for h in listing.held], sys.stdout, indent=1)
        print()
        return 0
    total = sum(h.size for h in listing.held)
    table = Table(box=box.SIMPLE_HEAD,
                  title=f"{len(listing.held)} originals held for other devices ({format_size(total)})")
    for column in ("id", "owner", "size", "stored", "kept"):
        table.add_column(column, no_wrap=True)
    for h in listing.held:
        table.add_row(h.image_id[:12], Text(shown(listing.names, h.owner)), format_size(h.size),
                      when(h.stored_at), held_form(h, rows.get(h.image_id)))
    console().print(table)
    return 0


def console() -> Console:
    from rich.console import Console

    out = Console(highlight=False)
    if not out.is_terminal:  # piped or captured: no terminal width to fit, so do not squeeze
        out = Console(highlight=False, width=160)
    return out


# --- keep ------------------------------------------------------------------------------


def add_keep(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "keep", help="keep a picture's smaller copy after its original arrives",
        description="A smaller copy stands in for an original that is not here yet and is "
        "dropped once the original arrives; keep one on purpose (e.g. for a web gallery) with "
        "this, or let it go again with --no.  Works with or without a running node.")
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("id", metavar="ID", help="picture id or a unique prefix")
    p.add_argument("--no", dest="keep", action="store_false",
                   help="do not keep it: dropped once (or, if already, now that) the original is here")
    p.set_defaults(run=run_keep)


def run_keep(args: argparse.Namespace) -> int:
    from mesh.control import NodeNotRunning, ask
    from mesh.errors import MeshError
    from storage.card import Card
    from storage.errors import CardBusy

    try:
        answer = ask(args.card, {"op": "keep", "id": args.id, "keep": args.keep})
        image_id, copy = answer["id"], answer["smaller"]
    except NodeNotRunning:
        try:
            with Card.open(args.card) as card:
                image_id = card.resolve(args.id)
                kept = card.keep_smaller(image_id, args.keep)
                copy = None if kept is None else {"kept": kept.kept}
        except CardBusy as exc:  # a node started meanwhile
            raise MeshError(f"{exc}; try again") from exc
    if copy is None:
        print(f"dropped the smaller copy of {image_id[:12]}: its original is here")
    elif copy["kept"]:
        print(f"keeping the smaller copy of {image_id[:12]} after its original arrives")
    else:
        print(f"the smaller copy of {image_id[:12]} goes once its original arrives")
    return 0


# --- thumb -----------------------------------------------------------------------------


def add_thumb(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "thumb", help="write a picture's thumbnail (JPEG) to a file",
        description="Write the thumbnail of the picture whose id starts with ID to FILE.",
    )
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("id", metavar="ID", help="an image id or a prefix of one (see `cammesh ls`)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    p.set_defaults(run=run_thumb)


def run_thumb(args: argparse.Namespace) -> int:
    from storage.card import Card
    from storage.errors import NotFound

    with Card.open(args.card) as card:
        image_id = card.resolve(args.id)
        record = card.image(image_id)
    if record is None or not record.thumbnail:
        raise NotFound(f"picture {image_id[:12]} has no thumbnail")
    args.output.write_bytes(record.thumbnail)
    print(f"thumbnail of {image_id[:12]} ({shown(record.name)}, {len(record.thumbnail)} bytes) -> {args.output}")
    return 0


COMMANDS: list[Register] = [add_init, add_import, add_ls, add_keep, add_thumb]
