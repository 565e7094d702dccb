"""The card commands: ``init``, ``import``, ``ls``, ``thumb`` and the ``demo`` that chains them."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mesh.cli import Register
from protocol.store import ImageRecord
from storage.card import Card
from storage.errors import NotFound
from storage.importer import ImportSummary, import_paths
from storage.sizes import format_size, parse_size

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
    from storage.card import check_settings
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
        "Exits 1 only when not one file could be read.",
    )
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="files or folders")
    p.set_defaults(run=run_import)


def import_with_progress(card: Card, paths: list[Path], console: Console) -> ImportSummary:
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


def print_summary(summary: ImportSummary, console: Console) -> None:
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
    console = Console(highlight=False, soft_wrap=True)  # long paths stay on one line
    with Card.open(args.card) as card:
        summary = import_with_progress(card, args.paths, console)
    print_summary(summary, console)
    return 1 if summary.nothing_read else 0


# --- ls --------------------------------------------------------------------------------


def add_ls(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "ls", help="list the pictures on a card",
        description="One row per picture: id prefix, name, size, capture time, where the "
        "original is (local, dispersed, absent) and when its thumbnail and original arrived.",
    )
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("--json", action="store_true", help="every field of every picture, as JSON")
    p.set_defaults(run=run_ls)


def as_json(record: ImageRecord, thumbnail_source: str | None) -> dict[str, Any]:
    return {
        "image_id": record.image_id, "origin": record.origin, "seq": record.seq,
        "name": record.name, "size": record.size, "mime": record.mime,
        "capture_time": record.capture_time, "metadata": dict(record.metadata),
        "where": record.where.value, "thumbnail_at": record.thumbnail_at,
        "original_at": record.original_at, "thumbnail_bytes": len(record.thumbnail),
        "thumbnail_source": thumbnail_source, "wrapped_key": record.wrapped_key is not None,
    }


def run_ls(args: argparse.Namespace) -> int:
    with Card.open(args.card) as card:
        records = card.images()
        sources = card.thumbnail_sources()
        usage = card.usage()
    if args.json:
        json.dump([as_json(r, sources.get(r.image_id)) for r in records], sys.stdout, indent=1)
        print()
        return 0
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(records)} pictures, {format_size(usage.used)} used, "
                        f"{format_size(usage.free)} free")
    for column in ("id", "name", "size", "captured", "original", "thumbnail at", "original at"):
        table.add_column(column, no_wrap=column != "name", min_width=12 if column == "name" else None)
    for r in records:
        table.add_row(
            r.image_id[:12], Text(shown(r.name)), format_size(r.size), when(r.capture_time),
            r.where.value, when(r.thumbnail_at) if r.thumbnail_at else "here", when(r.original_at),
        )
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: no terminal width to fit, so do not squeeze
        console = Console(highlight=False, width=160)
    console.print(table)
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
    with Card.open(args.card) as card:
        image_id = card.resolve(args.id)
        record = card.image(image_id)
    if record is None or not record.thumbnail:
        raise NotFound(f"picture {image_id[:12]} has no thumbnail")
    args.output.write_bytes(record.thumbnail)
    print(f"thumbnail of {image_id[:12]} ({shown(record.name)}, {len(record.thumbnail)} bytes) -> {args.output}")
    return 0


# --- demo ------------------------------------------------------------------------------


def add_demo(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="try cammesh on generated pictures, in a temporary folder",
        description="Generate a few sample pictures, then run init, import and ls on a "
        "temporary card, and print what happened. Leaves nothing behind.",
    )
    p.add_argument("--count", type=int, default=6, help="pictures to generate (default 6)")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from mesh.cli import main
    from storage.samples import write_sample_jpegs

    with tempfile.TemporaryDirectory(prefix="cammesh-demo-") as tmp:
        folder = Path(tmp)
        pictures = write_sample_jpegs(folder / "pictures", max(1, args.count), size="small", seed=7)
        card = folder / "card"
        steps = (
            ["init", str(card), "--name", "demo camera", "--capacity", "1GB"],
            ["import", str(card), str(folder / "pictures")],
            ["import", str(card), str(pictures[0])],  # again: recognised as a duplicate
            ["ls", str(card)],
        )
        for step in steps:
            print(f"$ cammesh {' '.join([*step[:1], 'CARD', *step[2:]])}")
            code = main(step)
            if code != 0:
                print(f"demo failed at `cammesh {step[0]}` (exit {code})", file=sys.stderr)
                return code
        with Card.open(card) as opened:
            count, used = len(opened.images()), opened.usage().used
    print(f"demo done: {len(pictures)} generated, {count} on the card ({format_size(used)}), "
          "the duplicate skipped")
    return 0 if count == len(pictures) else 1


COMMANDS: list[Register] = [add_init, add_import, add_ls, add_thumb, add_demo]
