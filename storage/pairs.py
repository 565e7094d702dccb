"""RAW+JPEG pairs: the two files a camera writes for one shutter press, known as one shot.

A camera set to RAW+JPEG writes ``DSC_0042.NEF`` and ``DSC_0042.JPG`` side by side.  They
are two pictures of the card (two originals, two ids); what makes them a pair is a shared
``pair`` key in each one's metadata, which travels with the thumbnail.  The key is made
from the file alone (where it came from, its folder, its stem), never from the other file,
so files that arrive one at a time and in either order (an FTP camera sends the JPEG first,
or the RAW) get the same key without either picture being changed after it is announced.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Final

PAIR_KEY: Final = "pair"  # the metadata key
RAW_SUFFIXES: Final = frozenset({
    ".arw", ".cr2", ".cr3", ".dng", ".nef", ".nrw", ".orf", ".raf", ".rw2", ".pef", ".srw",
    ".3fr", ".iiq", ".rwl", ".x3f",
})
# The processed half of a pair: JPEG, or HEIF on the cameras that shoot RAW+HEIF.
PROCESSED_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".heic", ".heif", ".hif"})


def pair_key(source: str, folder: str, name: str) -> str | None:
    """The key a RAW and its JPEG share when they came from the same ``source`` (an FTP
    account, or this machine's file system), the same ``folder`` and have the same stem
    (case aside: DSC_0042.NEF and dsc_0042.jpg pair); None for a file of no pair kind."""
    path = PurePath(name)
    suffix = path.suffix.lower()
    if suffix not in RAW_SUFFIXES and suffix not in PROCESSED_SUFFIXES:
        return None
    shot = "\0".join((source, folder, path.stem.casefold()))
    return hashlib.sha256(shot.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def is_raw(name: str) -> bool:
    return PurePath(name).suffix.lower() in RAW_SUFFIXES
