"""Import files into a card: folders recursed, duplicates skipped by hash, bad files reported.

``import_paths`` never stops on one bad file: each file is imported, found to
be a duplicate, or rejected with a reason, and the summary says which.  The
thumbnail and metadata come from ``storage.thumbnails.extract``; a file it
cannot make a thumbnail of is still imported, with a placeholder and a reason.
Run as ``python -m storage.importer CARD PATH...`` (the crash tests do).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.messages import MetadataValue
from storage.card import Card, Extraction
from storage.errors import CardFullError, ImportRejected, StoreError
from storage.movies import MOVIE_SUFFIXES, StripFrame
from storage.pairs import PAIR_KEY, pair_key

if TYPE_CHECKING:
    from storage.thumbnails import Extracted

log = logging.getLogger("cammesh.import")

Progress = Callable[[int, int, Path], None]  # (files done, files in all, the file just done)


@dataclass(frozen=True, slots=True)
class Imported:
    """A file that became a new picture on the card."""

    path: str
    image_id: str
    name: str
    size: int
    thumbnail_source: str
    reason: str | None  # why the thumbnail is a placeholder, if it is


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file not imported: a duplicate of ``image_id``, or rejected (``image_id`` None)."""

    path: str
    reason: str
    image_id: str | None = None


@dataclass(frozen=True, slots=True)
class ImportSummary:
    imported: tuple[Imported, ...]
    duplicates: tuple[Skipped, ...]
    rejected: tuple[Skipped, ...]

    @classmethod
    def of(cls, outcomes: Iterable[Imported | Skipped]) -> ImportSummary:
        """Sort outcomes into imported, duplicates (a Skipped naming the picture it
        repeats) and rejected, keeping their order."""
        imported: list[Imported] = []
        duplicates: list[Skipped] = []
        rejected: list[Skipped] = []
        for outcome in outcomes:
            if isinstance(outcome, Imported):
                imported.append(outcome)
            elif outcome.image_id is not None:
                duplicates.append(outcome)
            else:
                rejected.append(outcome)
        return cls(tuple(imported), tuple(duplicates), tuple(rejected))

    @property
    def nothing_read(self) -> bool:
        """True when files were named but not one of them could be read."""
        return not self.imported and not self.duplicates and bool(self.rejected)


def files_under(paths: Iterable[Path], *, card: Path) -> Iterator[tuple[Path, str | None]]:
    """Each file to import, in a stable order, with a reason when it is refused outright.

    The card's own folder is never walked: importing a card into itself would copy its catalog.
    """
    card = card.resolve()
    for path in paths:
        try:
            mode = os.stat(path).st_mode
            inside = path.resolve().is_relative_to(card)
        except (OSError, RuntimeError) as exc:
            yield path, f"cannot read it: {getattr(exc, 'strerror', None) or exc}"
            continue
        if inside:
            yield path, "it is (inside) the card being imported into"
        elif stat.S_ISDIR(mode):
            # Symlinked folders are not followed: a link loop must not hang the import.
            for root, dirs, names in os.walk(path):
                if Path(root).resolve() == card:
                    dirs.clear()
                    yield Path(root), "it is the card being imported into"
                    continue
                dirs.sort()
                for name in sorted(names):
                    yield from files_under([Path(root) / name], card=card)
        else:
            yield path, _refusal(path, mode)


def _refusal(path: Path, mode: int) -> str | None:
    if not stat.S_ISREG(mode):
        return "not a regular file (a device, pipe or socket)"  # reading a pipe could block forever
    if os.stat(path).st_size == 0 and path.suffix.lower() not in MOVIE_SUFFIXES:
        return "empty file (0 bytes): there is no picture in it"  # an empty movie: a placeholder
    if path.name.startswith("._"):
        return "a macOS resource fork (._ file), not a picture"
    return None


def _extract(path: Path) -> Extracted | _Failed:
    """B's extractor, guarded: it promises not to raise on bad content, and we hold it to that."""
    from storage.thumbnails import extract  # Pillow and EXIF parsing load only when importing

    try:
        return extract(path)
    except Exception as exc:  # a bug there must not stop the import: the original still counts
        log.exception("thumbnail extraction failed on %s", path)
        return _Failed(f"thumbnail extraction failed: {exc}")


@dataclass(frozen=True, slots=True)
class _Failed:
    """Extraction that raised: no thumbnail, the reason kept."""

    reason: str
    thumbnail: bytes = b""
    thumbnail_source: str = "placeholder"
    mime: str = "application/octet-stream"
    capture_time: float | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    strip: Sequence[StripFrame] = ()


def import_paths(
    card: Card,
    paths: Iterable[Path | str],
    *,
    now: float,
    progress: Progress | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
) -> ImportSummary:
    """Import every file under ``paths``; one bad file never stops the rest.

    ``metadata`` is laid over what each file's own says (e.g. the photographer an FTP
    account names).  What the summary lists as imported is durable when this returns.
    """
    todo = list(files_under((Path(p) for p in paths), card=card.path))
    outcomes: list[Imported | Skipped] = []
    with card.deferred_sync():  # the sources stay where they are until we return
        for done, (path, refusal) in enumerate(todo, start=1):
            outcomes.append(import_one(card, path, refusal, now=now, metadata=metadata))
            if progress is not None:
                progress(done, len(todo), path)
    summary = ImportSummary.of(outcomes)
    for skip in summary.rejected:
        log.warning("not imported: %s: %s", skip.path, skip.reason)
    return summary


def import_one(
    card: Card,
    path: Path,
    refusal: str | None,
    *,
    now: float,
    metadata: Mapping[str, MetadataValue] | None = None,
    adopt: bool = False,
    digest: str | None = None,
) -> Imported | Skipped:
    """One file of ``files_under``: imported, a duplicate, or rejected with its reason.
    ``adopt``: the file is the card's to take, ``digest`` its known SHA-256
    (``Card.add_original``).

    Outside ``deferred_sync`` an Imported picture is durable when this returns: its original
    fsynced and renamed into place, its catalog row committed with a full sync.
    """
    if refusal is not None:
        return Skipped(str(path), refusal)
    facts: list[Extraction] = []
    # A RAW and its JPEG side by side share a key (storage/pairs.py); a caller that knows
    # better where the file came from (an FTP upload's account and folder) gives its own.
    key = pair_key("file", os.fspath(path.absolute().parent), path.name)
    extra = {**({PAIR_KEY: key} if key else {}), **(metadata or {})}

    def extraction(_copy: Path) -> Extraction:
        # The source, not the copy: the extractor may use the file name's extension.
        found = _extract(path)
        if extra:
            found = dataclasses.replace(found, metadata={**found.metadata, **extra})
        facts.append(found)
        return facts[0]

    try:
        record, new = card.add_original(path, name=path.name, now=now, extracted=extraction,
                                        adopt=adopt, digest=digest)
    except (CardFullError, ImportRejected) as exc:
        return Skipped(str(path), str(exc))
    except StoreError as exc:
        return Skipped(str(path), f"the card refused it: {exc}")
    except OSError as exc:
        return Skipped(str(path), f"cannot read it: {exc.strerror or exc}")
    if not new:
        return Skipped(str(path), f"duplicate of {record.image_id[:12]} ({record.name})", record.image_id)
    reason = getattr(facts[0], "reason", None) if facts else None
    source = facts[0].thumbnail_source if facts else "given"
    if source == "placeholder":
        log.info("%s: imported with a placeholder thumbnail: %s", path, reason)
    return Imported(str(path), record.image_id, record.name, record.size, source, reason)


def main(argv: list[str] | None = None) -> int:
    """``python -m storage.importer CARD PATH...``: import and print one line per file."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m storage.importer CARD PATH...", file=sys.stderr)
        return 2
    try:
        with Card.open(args[0]) as card:
            summary = import_paths(card, args[1:], now=time.time())
    except StoreError as exc:
        print(f"import: {exc}", file=sys.stderr)
        return 2
    print(f"imported {len(summary.imported)}, duplicates {len(summary.duplicates)}, "
          f"rejected {len(summary.rejected)}")
    return 1 if summary.nothing_read else 0


if __name__ == "__main__":
    sys.exit(main())
