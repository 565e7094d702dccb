"""RAW files' embedded previews: the card's own TIFF parser first, LibRaw (rawpy) after.

TIFF-based RAW (.DNG, .NEF, .ARW, .CR2) is searched for its largest embedded JPEG preview (the
IFD chain, SubIFDs, the Exif IFD, then a scan for JPEGs no IFD names); what the parser does not
find, and .CR3 and .RAF, go to LibRaw through the media extra when it is installed.
"""

from __future__ import annotations

import dataclasses
import io
from typing import BinaryIO, Final

from PIL import Image

from storage.metadata import Exif, MetadataValue, Tiff, merged, read_exif
from storage.previews import (
    HEAD_BYTES,
    MAX_SIDE,
    Extracted,
    Unusable,
    decode,
    encode,
    jpeg_frame,
    placeholder,
    preview_thumbnail,
    reason_of,
)

MAX_RAW_CANDIDATES: Final = 64
MAX_TIFF_BYTES: Final = 512 * 1024 * 1024  # RAW files are read whole to find their previews


def from_tiff(file: BinaryIO, mime: str) -> Extracted:
    # Read, not mmap: a file truncated under an mmap kills the process with SIGBUS.
    file.seek(0)
    data = file.read(MAX_TIFF_BYTES + 1)
    if len(data) > MAX_TIFF_BYTES:
        raise Unusable(f"TIFF/RAW file larger than {MAX_TIFF_BYTES >> 20} MiB: not searched")
    tiff = Tiff(data)
    exif = read_exif(tiff)
    previews = _tiff_jpegs(tiff)
    if max((_long_side(data, *p) for p in previews), default=0) < MAX_SIDE:
        # Nothing the IFDs point at is big enough: look for previews they do not name.
        previews += [p for p in _scanned_jpegs(data) if p not in previews]
    failures = []
    for offset, length in sorted(previews, key=lambda p: -p[1]):
        try:
            thumbnail = preview_thumbnail(data[offset : offset + length], exif)
        except Exception as exc:
            failures.append(reason_of(exc))
            continue
        width, height = _int(exif.metadata.get("width")), _int(exif.metadata.get("height"))
        return Extracted(
            thumbnail, "raw-preview", None, mime, exif.capture_time, exif.metadata, width, height
        )
    if mime == "image/tiff":  # a plain TIFF: Pillow may decode it
        try:
            thumbnail, width, height = decode(io.BytesIO(data), exif.orientation)
        except Exception as exc:
            return placeholder(mime, reason_of(exc), exif)
        metadata = merged(exif.metadata, width=width, height=height)
        return Extracted(
            thumbnail, "decoded", None, mime, exif.capture_time, metadata, width, height
        )
    why = "; ".join(failures[:3]) if failures else "none found"
    return placeholder(mime, f"no usable embedded JPEG preview ({why})"[:1024], exif)


def _int(value: MetadataValue) -> int | None:
    return value if type(value) is int else None


def _long_side(data: bytes, offset: int, length: int) -> int:
    try:
        frame = jpeg_frame(data[offset : offset + min(length, HEAD_BYTES)])
    except Unusable:
        return 0
    return max(frame.width, frame.height) if frame is not None else 0


def _tiff_jpegs(tiff: Tiff) -> list[tuple[int, int]]:
    """(absolute offset, length) of every JPEG the IFDs point at: IFD chain, SubIFDs, Exif IFD."""
    found: list[tuple[int, int]] = []
    seen: set[int] = set()
    todo = [tiff.first_ifd]
    while todo and len(seen) < 64:
        offset = todo.pop()
        if offset in seen or offset <= 0:
            continue
        seen.add(offset)
        ifd = tiff.ifd(offset)
        todo.append(tiff.next_ifd(offset))
        for tag in (0x014A, 0x8769):  # SubIFDs, Exif IFD
            todo.extend(int(n) for n in tiff.numbers(ifd.get(tag))[:16])
        start, length = tiff.integer(ifd.get(0x0201)), tiff.integer(ifd.get(0x0202))
        if start is None and tiff.integer(ifd.get(0x0103)) in (6, 7):  # JPEG-compressed strip
            strips, counts = tiff.numbers(ifd.get(0x0111)), tiff.numbers(ifd.get(0x0117))
            if len(strips) == 1 and len(counts) == 1:
                start, length = int(strips[0]), int(counts[0])
        if start is not None and length:
            at = tiff.base + start
            if tiff.data[at : at + 2] == b"\xff\xd8":
                found.append((at, length))
    return found


def _scanned_jpegs(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of JPEG runs found by scanning for start-of-image markers."""
    found: list[tuple[int, int]] = []
    at = data.find(b"\xff\xd8\xff")
    while at >= 0 and len(found) < MAX_RAW_CANDIDATES:
        end = _jpeg_end(data, at)
        if end is not None:
            found.append((at, end - at))
        at = data.find(b"\xff\xd8\xff", at + 3)
    return found


def _jpeg_end(data: bytes, start: int) -> int | None:
    """Where the JPEG at ``start`` ends: skip its segments (an EXIF thumbnail inside is not
    the end), then the first end-of-image marker after the scan starts."""
    at = start + 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xDA:
            end = data.find(b"\xff\xd9", at)
            return end + 2 if end >= 0 else None
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def with_raw_size(file: BinaryIO, found: Extracted) -> Extracted:
    """Our own parser's preview, with the sensor size LibRaw reads when EXIF gave none."""
    if found.width is not None:
        return found
    try:
        import rawpy

        file.seek(0)
        with rawpy.imread(io.BytesIO(file.read(MAX_TIFF_BYTES))) as raw:
            width, height = int(raw.sizes.raw_width), int(raw.sizes.raw_height)
    except Exception:  # no rawpy, or LibRaw does not know it: the preview is what matters
        return found
    return dataclasses.replace(
        found, width=width, height=height,
        metadata=merged(found.metadata, width=width, height=height),
    )


_LIBRAW_FLIP: Final = {0: 1, 3: 3, 5: 8, 6: 6}  # LibRaw sizes.flip -> EXIF orientation


def from_rawpy(file: BinaryIO, mime: str, found: Extracted | None) -> Extracted:
    """The embedded preview as LibRaw finds it; ``found`` is what our own parser made."""
    try:
        import rawpy
    except ImportError:
        if found is not None:
            return found
        raise Unusable("install cammesh[media] to see this RAW's preview "
                        "(rawpy is not installed)") from None
    file.seek(0)
    data = file.read(MAX_TIFF_BYTES + 1)
    if len(data) > MAX_TIFF_BYTES:
        raise Unusable(f"RAW file larger than {MAX_TIFF_BYTES >> 20} MiB: not searched")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            orientation = _LIBRAW_FLIP.get(int(raw.sizes.flip), 1)
            width, height = int(raw.sizes.raw_width), int(raw.sizes.raw_height)
            thumb = raw.extract_thumb()
    except Exception as exc:
        if found is not None:
            return found
        raise Unusable(f"LibRaw cannot read it: {type(exc).__name__}: {exc}") from exc
    if thumb.format == rawpy.ThumbFormat.JPEG:
        jpeg = bytes(thumb.data)
        thumbnail = preview_thumbnail(jpeg, Exif(orientation=orientation))
    else:  # a bitmap preview (some older cameras)
        image = Image.fromarray(thumb.data)  # type: ignore[arg-type]  # an RGB ndarray
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        thumbnail = encode(image, orientation)
    base = found.metadata if found is not None else {}
    metadata = merged(dict(base), width=width, height=height)
    metadata.setdefault("orientation", orientation)
    capture_time = found.capture_time if found is not None else None
    return Extracted(thumbnail, "raw-preview", None, mime, capture_time, metadata, width, height)
