"""Whether a picture file holds all of itself: a transfer cut short must not count as a picture.

FTP's stream mode marks a file's end only by closing the data connection, so a camera that
drops mid-file, or closes cleanly too early, looks finished.  The formats say otherwise:
- JPEG: the image runs up to its end marker (EOI); segments are skipped by their lengths
  (an EXIF thumbnail's own EOI does not count), scans searched for the next real marker.
  Bytes after EOI are allowed (some cameras append previews).
- TIFF-based RAW (DNG, NEF, ARW, CR2, and TIFF itself): every IFD reached from the header
  (the IFD chain, SubIFDs, the EXIF IFD) lies in the file with each value it holds out of
  line (a MakerNote is one such value, not walked inside), and so does every image-data
  extent they name: strips (StripOffsets + StripByteCounts), tiles (TileOffsets +
  TileByteCounts) and embedded JPEGs (JPEGInterchangeFormat + its length).  Sensor data is
  what these cameras write last, so a file cut short loses part of an extent.
- ISO base media (CR3, HEIF, MP4, MOV): the top-level boxes' sizes tile the file, so the
  last box (``mdat``, the media) of a file cut short runs past its end.
Other files (RAF, PNG, ...) have no check here: ``complete`` says True (see
docs/ARCHITECTURE.md, "Pictures entering a running node").
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from pathlib import Path
from typing import BinaryIO, Final

_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data: a real marker
MAX_IFDS: Final = 64  # IFDs walked in one file: a loop or a maze in hostile bytes stops here
MAX_ENTRIES: Final = 4096  # entries of one IFD
MAX_BOXES: Final = 100_000  # top-level boxes of one ISO base media file
_TYPE_SIZE: Final = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
                     13: 4, 16: 8, 17: 8, 18: 8}
_EXTENTS: Final = ((0x0111, 0x0117), (0x0144, 0x0145), (0x0201, 0x0202))  # (offsets, lengths)
_SUB_IFDS: Final = (0x014A, 0x8769)  # SubIFDs, the EXIF IFD


def complete(path: Path) -> bool:
    """Whether ``path`` holds its whole picture, as far as its format tells (True when the
    format has no check here).  Never raises on the file's content; OSError if unreadable."""
    with path.open("rb") as file:
        head = file.read(16)
        size = os.fstat(file.fileno()).st_size
        if head[:2] == b"\xff\xd8":
            # Mapped, not read: the common answer needs its head and its last two bytes.
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return jpeg_complete(data)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"IIRO", b"IIU\x00"):  # TIFF, ORF, RW2
            return tiff_complete(file, size)
        if head[4:8] == b"ftyp":
            return boxes_complete(file, size)
    return True


def jpeg_complete(data: bytes | mmap.mmap) -> bool:
    """Whether JPEG ``data`` holds its image up to the end marker (EOI).

    A file whose segments lead to a scan and that ends in EOI is whole without a walk of
    its scans: inside entropy-coded data 0xFF is followed only by 0x00 or a restart
    marker, so a file cut inside a scan cannot end in FF D9.  (Only a progressive JPEG cut
    exactly after the bytes FF D9 inside a table between two scans could pass.)"""
    if data[:2] != b"\xff\xd8":
        return True  # not a JPEG after all: nothing to check it against
    at = 2
    walked = False  # past the first scan's header: the slow walk from here
    while at + 2 <= len(data):
        if data[at] != 0xFF:
            return False
        marker = data[at + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        if at + 4 > len(data):
            return False
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            if not walked and at < len(data) and data[-2:] == b"\xff\xd9":
                return True
            walked = True
            found = _MARKER.search(data, at)
            if found is None:
                return False
            at = found.start()
    return False


def tiff_complete(file: BinaryIO, size: int) -> bool:
    """Whether every IFD and image-data extent a TIFF-structured file names lies inside it."""
    file.seek(0)
    header = file.read(8)
    if len(header) < 8:
        return False
    order = "<" if header[:2] == b"II" else ">"
    todo = [struct.unpack(order + "I", header[4:8])[0]]
    seen: set[int] = set()
    while todo:
        at = todo.pop()
        if at == 0 or at in seen:
            continue
        if len(seen) >= MAX_IFDS:
            break
        seen.add(at)
        entries = _ifd(file, size, order, at)
        if entries is None:
            return False
        for offsets_tag, lengths_tag in _EXTENTS:
            offsets = entries.get(offsets_tag)
            lengths = entries.get(lengths_tag)
            if offsets is None or lengths is None:
                continue
            if offsets_tag == 0x0201:  # one JPEG: its offset, and its length in bytes
                offsets, lengths = offsets[:1], lengths[:1]
            if any(o + n > size for o, n in zip(offsets, lengths, strict=False)):
                return False
        for tag in _SUB_IFDS:
            todo.extend(entries.get(tag, ()))
        todo.extend(entries.get(-1, ()))  # the next IFD in the chain
    return True


def _ifd(file: BinaryIO, size: int, order: str, at: int) -> dict[int, tuple[int, ...]] | None:
    """An IFD's integer tags (arrays read from where they lie) and, as -1, the next IFD's
    offset; None when the IFD or an array it names lies past the end of the file."""
    if at + 2 > size:
        return None
    file.seek(at)
    (count,) = struct.unpack(order + "H", file.read(2))
    count = min(count, MAX_ENTRIES)
    if at + 2 + 12 * count + 4 > size:
        return None
    raw = file.read(12 * count + 4)
    out: dict[int, tuple[int, ...]] = {-1: struct.unpack(order + "I", raw[-4:])}
    wanted = {t for pair in _EXTENTS for t in pair} | set(_SUB_IFDS)
    for index in range(count):
        tag, kind, n, value = struct.unpack(order + "HHI4s", raw[12 * index : 12 * index + 12])
        width = _TYPE_SIZE.get(kind, 1)
        (where,) = struct.unpack(order + "I", value)
        if width * n > 4 and where + width * n > size:
            return None  # any value of an IFD lies in the file (the MakerNote as one blob)
        if tag not in wanted or kind not in (3, 4, 13):  # SHORT, LONG, IFD
            continue
        n = min(n, 1 << 20)
        if width * n <= 4:
            data = value[: width * n]
        else:
            file.seek(where)
            data = file.read(width * n)
        code = "H" if width == 2 else "I"
        out[tag] = struct.unpack(f"{order}{n}{code}", data)
    return out


def boxes_complete(file: BinaryIO, size: int) -> bool:
    """Whether an ISO base media file's top-level boxes end exactly at its end."""
    at = 0
    for _ in range(MAX_BOXES):
        if at == size:
            return True
        if at + 8 > size:
            return False
        file.seek(at)
        length, _kind = struct.unpack(">I4s", file.read(8))
        if length == 1:  # a 64-bit size follows the type
            if at + 16 > size:
                return False
            (length,) = struct.unpack(">Q", file.read(8))
        elif length == 0:  # "to the end of the file": nothing to check it against
            return True
        if length < 8:
            return True  # not box structure after all: no judgement
        at += length
    return True
