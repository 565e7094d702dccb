"""The card's folders, and how a file reaches its final name there without a torn state.

A file is written under ``tmp/``, fsynced, renamed to its final name, and the
directory is fsynced after the rename; only then may a catalog row point at it.
So a crash leaves, at worst, files that no row points at (``storage.recovery``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

from protocol.store import Incoming
from storage.errors import CardBusy, NotFound, StoreError

CHUNK: Final = 1024 * 1024
HEX64: Final = re.compile(r"[0-9a-f]{64}\Z")


class CardFolder:
    """Where each kind of file lives on a card (the layout in ``storage.card``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.originals = path / "originals"
        self.held = path / "held"
        self.smaller = path / "smaller"
        self.partial = path / "partial"
        self.tmp = path / "tmp"
        self._shards: set[str] = set()

    def make(self) -> None:
        """Create every folder a card needs (an existing one is kept)."""
        for folder in (self.originals, self.held, self.smaller, self.tmp,
                       *(self.partial / kind.value for kind in Incoming)):
            folder.mkdir(parents=True, exist_ok=True)

    def original_file(self, image_id: str) -> Path:
        return self.originals / image_id[:2] / image_id

    def partial_file(self, image_id: str, kind: Incoming) -> Path:
        if not HEX64.match(image_id):
            raise StoreError(f"{image_id!r} is not an image id")  # never let a peer pick a path
        return self.partial / kind.value / image_id

    def write_temp(
        self, chunks: Iterable[bytes], limit: int, *, grew: Callable[[int], None]
    ) -> tuple[Path, str, int]:
        """Copy ``chunks`` to a fsynced temp file, hashing on the way: (path, SHA-256, size).

        Past ``limit`` bytes ``grew(size)`` is called, and may raise (CardFullError) to stop.
        """
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="in-")
        temp = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:  # the file grew while we read it: check the room again
                        grew(size)
                        limit = size
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            unlink(temp)
            raise
        return temp, digest.hexdigest(), size

    def link_temp(self, source: Path, *, digest: str | None = None
                  ) -> tuple[Path, str, int, os.stat_result] | None:
        """Hard-link ``source`` under ``tmp/``, hash it (unless its ``digest`` is known) and
        fsync it: (path, SHA-256, size, its stat before the hash); None when it cannot be
        linked (another filesystem).

        For a file nobody writes again (an FTP upload handed over): the card takes its bytes
        without a copy, and ``source`` keeps its own name until its owner removes it, so a
        crash before the catalog commits loses nothing."""
        temp = self.tmp / f"in-{secrets.token_hex(8)}"
        try:
            os.link(source, temp)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                return None
            raise
        try:
            with temp.open("rb") as f:
                before = os.fstat(f.fileno())
                size = before.st_size
                if digest is None:
                    hashing = hashlib.sha256()
                    for chunk in iter(lambda: f.read(CHUNK), b""):
                        hashing.update(chunk)
                    digest, size = hashing.hexdigest(), f.tell()
                os.fsync(f.fileno())
            os.chmod(temp, 0o600)  # as a copy's would be (mkstemp)
        except BaseException:
            unlink(temp)
            raise
        return temp, digest, size, before

    def place(self, temp: Path, final: Path) -> None:
        """Rename a fsynced file to its final name and make the rename durable."""
        if final.parent.name not in self._shards and final.parent.parent == self.originals:
            if not final.parent.exists():
                final.parent.mkdir()
                fsync_dir(self.originals)
            self._shards.add(final.parent.name)
        os.replace(temp, final)  # ``temp`` was fsynced by whoever wrote it
        fsync_dir(final.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_card(path: Path) -> int:
    """Hold the card for this process: recovery on open must not delete another's writes."""
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CardBusy(
            f"the card {path} is in use by another process (a running `cammesh node`, or another "
            "import); stop it, or ask the running node to do this"
        ) from None
    return fd


def unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def read_range(path: Path, offset: int, length: int) -> bytes:
    if offset < 0 or length < 0:
        raise StoreError(f"cannot read {length} bytes at offset {offset}")
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(length)
    except FileNotFoundError as exc:
        raise NotFound(f"{path.name[:12]} is listed but its file is gone") from exc


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def iter_card_files(path: Path) -> Iterator[Path]:
    """Every file whose bytes count against the card's capacity (tests and checks use it)."""
    for folder in ("originals", "held", "smaller", "partial"):
        for file in (path / folder).rglob("*"):
            if file.is_file():
                yield file
