"""``cammesh export``: the desk's selects as byte-identical originals, each with an XMP sidecar.

The sidecar (``NAME.xmp``, beside ``NAME.EXT``, as Photo Mechanic and Lightroom look for it)
carries the picture's rating, colour class and its label, tag and caption fields
(storage/xmp.py).  Originals that are not on this card are read out through the node running
on it, wherever in the mesh they are; without a running node they are named and left out.
Nothing already in the target folder is ever replaced: a name in use gets ``-2``, ``-3``...
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.errors import MeshError

if TYPE_CHECKING:
    from mesh.cli import Register
    from protocol.store import ImageRecord
    from storage.marks import Marks

Subparsers = Any
CHUNK = 1024 * 1024
NOT_HERE = 1  # exit code when some selected originals could not be exported


def add_export(subparsers: Subparsers) -> None:
    from storage.export import TEMPLATE_FIELDS

    names = "; ".join(f"{{{name}}}: {meaning}" for name, meaning in TEMPLATE_FIELDS.items())
    p = subparsers.add_parser(
        "export", help="write selected originals, with XMP sidecars of the desk's marks, to a folder",
        description="Write the originals of the selected pictures to DIR, byte for byte, each "
        "with an XMP sidecar (NAME.xmp) holding its rating, colour class and label, tag, caption, "
        "headline, credit and keywords, as Photo Mechanic, Lightroom and exiftool read them. "
        "The filters combine (all must hold); with none, every picture is exported. Originals "
        "not on this card are read out through the node running on CARD (start `cammesh node "
        "CARD` or `cammesh desk CARD` first); without one they are named and left out (exit 1). "
        "An existing file is never replaced: the new one gets a -2, -3... suffix.",
        epilog=f"Rename template fields: {names}. The original's extension is always kept.",
    )
    p.add_argument("card", type=Path, metavar="CARD")
    p.add_argument("--to", type=Path, required=True, metavar="DIR",
                   help="the folder to write into (created if missing)")
    p.add_argument("--tagged", action="store_true", help="only tagged pictures")
    p.add_argument("--rating", type=int, choices=range(0, 6), metavar="N",
                   help="only pictures rated N stars or more (0-5)")
    p.add_argument("--label", metavar="NAME",
                   help="only pictures of this colour class: its label (e.g. Winner) or 1-8")
    p.add_argument("--rename", metavar="TEMPLATE",
                   help="name the files by a template, e.g. '{date}_{photographer}_{seq}'")
    p.set_defaults(run=run_export)


@dataclass
class Selection:
    """The pictures to export with their marks, and how their originals will be read."""

    records: list[ImageRecord]
    marks: dict[str, Marks]
    labels: dict[int, str]
    node_runs: bool
    skipped: list[tuple[ImageRecord, str]] = field(default_factory=list)


def read_card(card_dir: Path) -> tuple[list[ImageRecord], dict[str, Marks], dict[int, str], bool]:
    """Every picture, its marks and the colour labels; and whether a node holds the card."""
    from mesh.card_commands import read_listing
    from storage.marks import marks_of

    listing = read_listing(card_dir)  # a consistent snapshot, beside a running node too
    marks = {image_id: marks_of(stamped) for image_id, stamped in listing.marks.items()}
    return listing.records, marks, listing.labels, listing.usage is None


def label_class(label: str, labels: dict[int, str]) -> int:
    """The colour class ``label`` names (its number, or its label in any case)."""
    if label.isdigit() and 1 <= int(label) <= 8:
        return int(label)
    for number, name in labels.items():
        if name.casefold() == label.casefold():
            return number
    known = ", ".join(f"{n} {name!r}" for n, name in sorted(labels.items()))
    raise MeshError(f"no colour class is labelled {label!r}; the labels are {known}")


def select(records: list[ImageRecord], marks: dict[str, Marks], labels: dict[int, str], *,
           tagged: bool, rating: int | None, label: str | None) -> list[ImageRecord]:
    """The pictures every given filter admits, in capture order (oldest first)."""
    from storage.marks import Marks

    wanted_class = None if label is None else label_class(label, labels)
    chosen = []
    for record in records:
        m = marks.get(record.image_id, Marks())
        if tagged and not m.tagged:
            continue
        if rating is not None and (m.rating is None or m.rating < rating):
            continue
        if wanted_class is not None and m.color != wanted_class:
            continue
        chosen.append(record)
    return sorted(chosen, key=lambda r: (r.capture_time or 0.0, r.origin, r.seq))


def run_export(args: argparse.Namespace) -> int:
    from storage.export import check_template

    if args.rename is not None:
        check_template(args.rename)
    records, marks, labels, node_runs = read_card(args.card)
    chosen = select(records, marks, labels, tagged=args.tagged, rating=args.rating, label=args.label)
    if not chosen:
        print("no picture matches; nothing exported")
        return 0
    args.to.mkdir(parents=True, exist_ok=True)
    selection = Selection(chosen, marks, labels, node_runs)
    with _progress(len(chosen)) as advance:
        written = export_card(args.card, args.to, selection, template=args.rename,
                              advance=advance)
    total = sum(size for _, size in written)
    print(f"exported {len(written)} original(s) ({total} bytes) with sidecars to {args.to}")
    for record, reason in selection.skipped:
        print(f"  not exported: {record.image_id[:12]} {record.name!r}: {reason}", file=sys.stderr)
    if selection.skipped and not node_runs:
        print(f"  start `cammesh node {args.card}` (or `cammesh desk {args.card}`) and export "
              "again: it reads the missing originals out of the mesh", file=sys.stderr)
    return NOT_HERE if selection.skipped else 0


Fetch = Callable[["ImageRecord", Path], None]
"""Writes a picture's verified original to a new file (never replacing one); raises
MeshError or ValueError, naming why, when it cannot."""


def export(folder: Path, selection: Selection, fetch: Fetch, *, template: str | None,
           advance: Callable[[str], None] = lambda name: None) -> list[tuple[Path, int]]:
    """Write each selected original (through ``fetch``) and its sidecar into ``folder``;
    returns (path, size) of each written; what could not go is added to ``selection.skipped``."""
    from storage.export import export_stem, free_stem, split_name, write_new
    from storage.marks import Marks
    from storage.xmp import xmp_packet

    written = []
    for seq, record in enumerate(selection.records, start=1):
        advance(record.name)
        ext = split_name(record.name)[1]
        stem = free_stem(folder, export_stem(template, record, seq), (ext, ".xmp"))
        target = folder / (stem + ext)
        try:
            fetch(record, target)
        except (MeshError, ValueError) as exc:
            selection.skipped.append((record, str(exc)))
            continue
        packet = xmp_packet(selection.marks.get(record.image_id, Marks()), selection.labels)
        write_new(folder / (stem + ".xmp"), packet)
        written.append((target, record.size))
    return written


def export_card(card_dir: Path, folder: Path, selection: Selection, *, template: str | None,
                advance: Callable[[str], None] = lambda name: None) -> list[tuple[Path, int]]:
    """``export`` from a card: through the node running on it, else from the card itself."""
    from protocol.store import Where
    from storage.export import write_new

    if selection.node_runs:
        return export(folder, selection, lambda r, t: _read_out(card_dir, r.image_id, t),
                      template=template, advance=advance)
    with _open(card_dir) as card:

        def fetch(record: ImageRecord, target: Path) -> None:
            if record.where is not Where.LOCAL:
                raise MeshError(f"its original is {record.where.value}, not on this card, and "
                                "no node runs on the card to read it out")
            write_new(target, _verified(card, record))

        return export(folder, selection, fetch, template=template, advance=advance)


def _open(card_dir: Path) -> Any:
    from storage.card import Card

    return Card.open(card_dir)


def _verified(card: Any, record: ImageRecord) -> Iterator[bytes]:
    """The original's bytes from the card, checked against its id as they are read."""
    hasher, offset = hashlib.sha256(), 0
    while offset < record.size:
        data = card.read_original(record.image_id, offset, min(CHUNK, record.size - offset))
        if not data:
            break
        hasher.update(data)
        offset += len(data)
        yield data
    if hasher.hexdigest() != record.image_id:
        raise ValueError("the original on the card does not hash to its id; not exported")


def _read_out(card_dir: Path, image_id: str, target: Path) -> None:
    """The running node reads the original out (from the card or the mesh) into ``target``."""
    from mesh.control import ask
    from storage.export import link_new

    part = target.with_name(f".{target.name}.cammesh-part")
    try:
        ask(card_dir, {"op": "get", "id": image_id, "path": str(part.resolve()),
                       "timeout": 300, "wait": 0}, timeout=330)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    with open(part, "rb") as check:  # the node verified it; a second look costs little here
        if hashlib.file_digest(check, "sha256").hexdigest() != image_id:
            part.unlink(missing_ok=True)
            raise ValueError("the read-out bytes do not hash to the image id; not exported")
    link_new(part, target)


class _progress:
    """A progress bar on a terminal (stderr) for exports of more than a few pictures."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Callable[[str], None]:
        if not sys.stderr.isatty() or self.total < 3:
            return lambda name: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.description}"),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task("", total=self.total)

        def advance(name: str) -> None:
            self.bar.update(task, advance=1, description=name[:40])

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


COMMANDS: list[Register] = [add_export]
