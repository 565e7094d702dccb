"""Thumbnails and metadata of one file, made without ever letting its content stop an import.

``extract(path)`` tries, in order (DESIGN.md, "Storage"): the JPEG thumbnail embedded in EXIF
(found by reading the first bytes only, no decode of the picture); a reduced decode (Pillow
``draft``) to at most 320 px on the long side; for TIFF-based RAW files the largest embedded
JPEG preview; and otherwise a grey placeholder with a reason. EXIF orientation is applied to
the small thumbnail, never to the big picture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from PIL import Image

from storage.errors import MovieUnusable
from storage.metadata import Exif, MetadataValue, Tiff, merged, read_exif
from storage.movie_process import extract_movie_isolated
from storage.movies import MEDIA_HINT, StripFrame

MAX_SIDE: Final = 320
HEAD_BYTES: Final = 128 * 1024  # EXIF lives in one APP1 segment of at most 64 KiB, near the start
MAX_HEAD_BYTES: Final = 1024 * 1024  # give up looking for the frame header after this much
MAX_EMBEDDED: Final = 256 * 1024  # protocol Limits.MAX_THUMBNAIL
MAX_RAW_CANDIDATES: Final = 64
MAX_TIFF_BYTES: Final = 512 * 1024 * 1024  # RAW files are read whole to find their previews
QUALITY: Final = 85

# EXIF orientation -> the transpose that shows the picture upright (EXIF 2.32, tag 0x0112).
_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Frame headers Pillow decodes: baseline, extended and progressive Huffman.
_DECODABLE_SOF: Final = {0xC0, 0xC1, 0xC2}
_ALL_SOF: Final = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True, slots=True)
class Extracted:
    """What import stores about a file besides its bytes.

    ``thumbnail_source`` is "embedded", "decoded", "raw-preview", "keyframe" (a movie's
    poster, the first frame of its ``strip``) or "placeholder"; ``reason`` says why the
    embedded thumbnail was not used, why there is only a placeholder, or why a movie's strip
    was cut short.  ``width``/``height`` are the pixels as stored, before orientation."""

    thumbnail: bytes
    thumbnail_source: str
    reason: str | None
    mime: str
    capture_time: float | None
    metadata: dict[str, MetadataValue] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    strip: tuple[StripFrame, ...] = ()


class _Unusable(Exception):
    """This file's content cannot give a thumbnail; the message is the logged reason."""


def extract(path: Path, *, use_embedded: bool = True) -> Extracted:
    """Thumbnail, mime type, capture time and metadata of the file at ``path``.

    Raises only when the path itself cannot be opened (OSError); any content gives a result.
    ``use_embedded=False`` skips the EXIF thumbnail of a JPEG (to remake it, or to measure)."""
    with path.open("rb") as file:
        head = file.read(HEAD_BYTES)
        mime = mime_of(head)
        try:
            return _extract(path, file, head, mime, use_embedded)
        except Exception as exc:  # a hostile file must never stop an import (DESIGN.md)
            return placeholder(mime, _why(exc))


def _why(exc: Exception) -> str:
    """The logged reason a thumbnail could not be made (at most protocol Limits.MAX_TEXT)."""
    if isinstance(exc, _Unusable | MovieUnusable):
        text = str(exc)
    elif isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        text = f"decompression bomb: {exc}"  # the warning is raised when warnings are errors
    else:
        text = f"unreadable picture: {type(exc).__name__}: {exc}"
    return text[:1024]


def placeholder(
    mime: str, reason: str, exif: Exif | None = None, size: tuple[int, int] | None = None
) -> Extracted:
    """The grey placeholder result, keeping whatever metadata could be read."""
    exif = exif or Exif()
    width, height = size or (None, None)
    metadata = merged(exif.metadata, width=width, height=height)
    return Extracted(
        _placeholder_jpeg(), "placeholder", reason, mime, exif.capture_time, metadata, width, height
    )


@functools.cache
def _placeholder_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (160, 120), (128, 128, 128)).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def mime_of(head: bytes) -> str:
    """The media type from the first bytes of a file (magic numbers), never from its name."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_mime(head)
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "image/x-fuji-raf"
    if _is_transport_stream(head):
        return "video/mp2t"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1"):
            return "image/heic"
        return "image/x-canon-cr3" if brand == b"crx " else "video/mp4"
    if head and _looks_like_text(head[:4096]):
        return "text/plain"
    return "application/octet-stream"


def _is_transport_stream(head: bytes) -> bool:
    """MPEG-TS (.MTS is 192-byte packets with a 4-byte timestamp first, M2TS): a sync byte
    0x47 at the start of each of the first packets."""
    for size, first in ((188, 0), (192, 4)):
        starts = range(first, min(len(head), 5 * size), size)
        if len(starts) >= 2 and all(head[at] == 0x47 for at in starts):
            return True
    return False


def _looks_like_text(sample: bytes) -> bool:
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def _tiff_mime(head: bytes) -> str:
    if head[8:10] == b"CR":
        return "image/x-canon-cr2"
    try:
        tiff = Tiff(head)
    except ValueError:
        return "image/tiff"
    ifd0 = tiff.ifd(tiff.first_ifd)
    if 0xC612 in ifd0:  # DNGVersion
        return "image/x-adobe-dng"
    make = (tiff.text(ifd0.get(0x010F)) or "").upper()
    if make.startswith("NIKON"):
        return "image/x-nikon-nef"
    if make.startswith("SONY"):
        return "image/x-sony-arw"
    return "image/tiff"


def _extract(
    path: Path, file: BinaryIO, head: bytes, mime: str, use_embedded: bool
) -> Extracted:
    if not head:
        raise _Unusable("empty file")
    if mime == "image/jpeg":
        return _from_jpeg(file, head, mime, use_embedded)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        found = _from_tiff(file, mime)
        if mime == "image/tiff":
            return found
        if found.thumbnail_source != "placeholder":
            return _with_raw_size(file, found)
        return _from_rawpy(file, mime, found)  # LibRaw knows makers' layouts we do not
    if mime in ("image/x-canon-cr3", "image/x-fuji-raf"):
        return _from_rawpy(file, mime, None)
    if mime == "image/heic":
        return _from_heif(file, mime, use_embedded)
    if mime.startswith("video/"):
        return _from_movie(path, mime)
    if mime in ("image/png", "image/gif", "image/webp"):
        file.seek(0)
        thumbnail, width, height = _decode(file, 1)
        metadata = merged({}, width=width, height=height)
        return Extracted(thumbnail, "decoded", None, mime, None, metadata, width, height)
    raise _Unusable(f"not a picture this device can read ({mime})")


# --- JPEG ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frame:
    """What the marker segments before the scan say: where EXIF is, and the frame size."""

    exif: bytes | None
    sof: int | None
    width: int
    height: int


def _frame(data: bytes) -> _Frame | None:
    """Walk JPEG marker segments up to the scan; None when ``data`` ends before the frame."""
    at, exif = 2, None
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise _Unusable("damaged JPEG: marker expected")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            at += 2
            continue
        if marker in (0xD9, 0xDA):
            raise _Unusable("damaged JPEG: no frame header before the scan")
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        end = at + 2 + length
        if length < 2:
            raise _Unusable("damaged JPEG: bad segment length")
        if end > len(data):
            return None
        if marker == 0xE1 and exif is None and data[at + 4 : at + 10] == b"Exif\0\0":
            exif = data[at + 4 : end]
        if marker in _ALL_SOF:
            if length < 8:
                raise _Unusable("damaged JPEG: short frame header")
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return _Frame(exif, marker, width, height)
        at = end
    return None


def _read_frame(file: BinaryIO, head: bytes) -> _Frame:
    frame = _frame(head)
    while frame is None and len(head) < MAX_HEAD_BYTES:
        more = file.read(len(head))
        if not more:
            raise _Unusable("truncated JPEG: it ends before its frame header")
        head += more
        frame = _frame(head)
    if frame is None:
        raise _Unusable("damaged JPEG: no frame header in the first megabyte")
    return frame


def _from_jpeg(file: BinaryIO, head: bytes, mime: str, use_embedded: bool) -> Extracted:
    frame = _read_frame(file, head)
    exif, embedded = Exif(), None
    if frame.exif is not None:
        try:
            tiff = Tiff(frame.exif, 6)
        except ValueError:
            tiff = None
        if tiff is not None:
            exif = read_exif(tiff)
            embedded = _ifd1_thumbnail(tiff) if use_embedded else None
    metadata = merged(exif.metadata, width=frame.width, height=frame.height)
    result = functools.partial(
        Extracted,
        mime=mime,
        capture_time=exif.capture_time,
        metadata=metadata,
        width=frame.width,
        height=frame.height,
    )
    if embedded is not None:
        try:
            thumbnail = _upright_thumbnail(embedded, exif.orientation)
        except Exception as exc:  # a broken embedded thumbnail: decode the picture instead
            reason = f"embedded thumbnail unreadable ({type(exc).__name__})"
        else:
            return result(thumbnail=thumbnail, thumbnail_source="embedded", reason=None)
    else:
        reason = "no embedded EXIF thumbnail" if use_embedded else "embedded thumbnail not wanted"
    try:
        if frame.sof not in _DECODABLE_SOF:
            raise _Unusable(f"JPEG coding 0x{frame.sof:02X} cannot be decoded here")
        if frame.width * frame.height > _max_pixels() or not frame.width or not frame.height:
            raise _Unusable(
                f"decompression bomb: the frame claims {frame.width}x{frame.height} pixels"
            )
        file.seek(0)
        thumbnail, _, _ = _decode(file, exif.orientation)
    except Exception as exc:  # keep the metadata EXIF gave even when the picture is broken
        return placeholder(mime, _why(exc), exif, (frame.width, frame.height))
    return result(thumbnail=thumbnail, thumbnail_source="decoded", reason=reason)


def _ifd1_thumbnail(tiff: Tiff) -> bytes | None:
    """The JPEG IFD1 points at (JPEGInterchangeFormat/Length), if it looks like a whole JPEG."""
    ifd1 = tiff.ifd(tiff.next_ifd(tiff.first_ifd))
    offset, length = tiff.integer(ifd1.get(0x0201)), tiff.integer(ifd1.get(0x0202))
    if offset is None or length is None or not 0 < length <= MAX_EMBEDDED:
        return None
    data = bytes(tiff.data[tiff.base + offset : tiff.base + offset + length])
    if len(data) != length or not data.startswith(b"\xff\xd8"):
        return None
    if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return None
    return data


def _upright_thumbnail(jpeg: bytes, orientation: int) -> bytes:
    """The embedded thumbnail as is when upright and small, else turned/reduced and re-encoded."""
    with Image.open(io.BytesIO(jpeg), formats=["JPEG"]) as image:
        if orientation == 1 and max(image.size) <= MAX_SIDE:
            return jpeg
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        return _encode(image, orientation)


def _decode(file: BinaryIO, orientation: int) -> tuple[bytes, int, int]:
    """A reduced decode: the JPEG decoder scales by 1/2..1/8 (``draft``), then a resample."""
    with warnings.catch_warnings():
        # Pillow re-reads EXIF on open and warns about damage we already handled ourselves;
        # its bomb warning is replaced by our own size check just below (same limit).
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(file)
    with image:
        width, height = image.size
        if width * height > _max_pixels():
            raise _Unusable(f"decompression bomb: {width}x{height} pixels is past the limit")
        image.draft("RGB", (MAX_SIDE, MAX_SIDE))
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        return _encode(image, orientation), width, height


def _encode(image: Image.Image, orientation: int) -> bytes:
    if image.mode != "RGB":
        image = image.convert("RGB")
    if orientation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[orientation])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def _max_pixels() -> int:
    # Pillow's own bomb limit (it warns above it): a caller that raised it wants bigger pictures.
    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else 1 << 40


# --- TIFF-based RAW -----------------------------------------------------------------


def _from_tiff(file: BinaryIO, mime: str) -> Extracted:
    # Read, not mmap: a file truncated under an mmap kills the process with SIGBUS.
    file.seek(0)
    data = file.read(MAX_TIFF_BYTES + 1)
    if len(data) > MAX_TIFF_BYTES:
        raise _Unusable(f"TIFF/RAW file larger than {MAX_TIFF_BYTES >> 20} MiB: not searched")
    tiff = Tiff(data)
    exif = read_exif(tiff)
    previews = _tiff_jpegs(tiff)
    if max((_long_side(data, *p) for p in previews), default=0) < MAX_SIDE:
        # Nothing the IFDs point at is big enough: look for previews they do not name.
        previews += [p for p in _scanned_jpegs(data) if p not in previews]
    failures = []
    for offset, length in sorted(previews, key=lambda p: -p[1]):
        try:
            thumbnail = _preview_thumbnail(data[offset : offset + length], exif)
        except Exception as exc:
            failures.append(_why(exc))
            continue
        width, height = _int(exif.metadata.get("width")), _int(exif.metadata.get("height"))
        return Extracted(
            thumbnail, "raw-preview", None, mime, exif.capture_time, exif.metadata, width, height
        )
    if mime == "image/tiff":  # a plain TIFF: Pillow may decode it
        try:
            thumbnail, width, height = _decode(io.BytesIO(data), exif.orientation)
        except Exception as exc:
            return placeholder(mime, _why(exc), exif)
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
        frame = _frame(data[offset : offset + min(length, HEAD_BYTES)])
    except _Unusable:
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


def _preview_thumbnail(jpeg: bytes, exif: Exif) -> bytes:
    frame = _frame(jpeg)
    if frame is None or frame.sof not in _DECODABLE_SOF:
        raise _Unusable("not a decodable JPEG (lossless raw data?)")
    if frame.width * frame.height > _max_pixels():
        raise _Unusable(f"preview claims {frame.width}x{frame.height} pixels")
    thumbnail, _, _ = _decode(io.BytesIO(jpeg), exif.orientation)
    return thumbnail


# --- movies, HEIF, RAW through the media extra (cammesh[media]) ---------------------


def _from_movie(path: Path, mime: str) -> Extracted:
    try:
        import av  # noqa: F401  # said here, at once, rather than by a child process
    except ImportError:
        raise MovieUnusable(f"{MEDIA_HINT} (PyAV is not installed)") from None
    movie = extract_movie_isolated(path)  # MovieUnusable becomes the placeholder's reason
    return Extracted(
        movie.poster, "keyframe", movie.reason, mime, movie.capture_time, movie.metadata,
        movie.width, movie.height, movie.strip,
    )


def _from_heif(file: BinaryIO, mime: str, use_embedded: bool) -> Extracted:
    """Its embedded thumbnail first, else a decode of the primary image, reduced here.

    libheif applies the picture's own rotation and mirroring (irot/imir) to both, so the
    EXIF orientation is metadata only; applying it again would turn the picture twice."""
    try:
        import pillow_heif
    except ImportError:
        raise _Unusable(f"{MEDIA_HINT.replace('movie strips', 'HEIF thumbnails')} "
                        "(pillow-heif is not installed)") from None
    file.seek(0)
    heif = pillow_heif.open_heif(file, convert_hdr_to_8bit=True)
    primary = heif[heif.primary_index]
    width, height = primary.size
    if width * height > _max_pixels():
        raise _Unusable(f"decompression bomb: {width}x{height} pixels is past the limit")
    exif = Exif()
    raw_exif = primary.info.get("exif")
    if isinstance(raw_exif, bytes) and raw_exif:
        with contextlib.suppress(ValueError):
            exif = read_exif(Tiff(raw_exif, 6 if raw_exif[:6] == b"Exif\0\0" else 0))
    metadata = merged(exif.metadata, width=width, height=height)
    reason: str | None = "no embedded HEIF thumbnail"
    if use_embedded and primary.info.get("thumbnails"):
        try:
            image = primary.get_thumbnail(0).to_pillow()
            image.thumbnail((MAX_SIDE, MAX_SIDE))
            thumbnail = _encode(image, 1)
        except Exception as exc:  # a broken thumbnail item: decode the picture instead
            reason = f"embedded thumbnail unreadable ({type(exc).__name__})"
        else:
            return Extracted(thumbnail, "embedded", None, mime, exif.capture_time, metadata,
                             width, height)
    elif not use_embedded:
        reason = "embedded thumbnail not wanted"
    image = primary.to_pillow()
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return Extracted(_encode(image, 1), "decoded", reason, mime, exif.capture_time, metadata,
                     width, height)


def _with_raw_size(file: BinaryIO, found: Extracted) -> Extracted:
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


def _from_rawpy(file: BinaryIO, mime: str, found: Extracted | None) -> Extracted:
    """The embedded preview as LibRaw finds it; ``found`` is what our own parser made."""
    try:
        import rawpy
    except ImportError:
        if found is not None:
            return found
        raise _Unusable("install cammesh[media] to see this RAW's preview "
                        "(rawpy is not installed)") from None
    file.seek(0)
    data = file.read(MAX_TIFF_BYTES + 1)
    if len(data) > MAX_TIFF_BYTES:
        raise _Unusable(f"RAW file larger than {MAX_TIFF_BYTES >> 20} MiB: not searched")
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            orientation = _LIBRAW_FLIP.get(int(raw.sizes.flip), 1)
            width, height = int(raw.sizes.raw_width), int(raw.sizes.raw_height)
            thumb = raw.extract_thumb()
    except Exception as exc:
        if found is not None:
            return found
        raise _Unusable(f"LibRaw cannot read it: {type(exc).__name__}: {exc}") from exc
    if thumb.format == rawpy.ThumbFormat.JPEG:
        jpeg = bytes(thumb.data)
        thumbnail = _preview_thumbnail(jpeg, Exif(orientation=orientation))
    else:  # a bitmap preview (some older cameras)
        image = Image.fromarray(thumb.data)  # type: ignore[arg-type]  # an RGB ndarray
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        thumbnail = _encode(image, orientation)
    base = found.metadata if found is not None else {}
    metadata = merged(dict(base), width=width, height=height)
    metadata.setdefault("orientation", orientation)
    capture_time = found.capture_time if found is not None else None
    return Extracted(thumbnail, "raw-preview", None, mime, capture_time, metadata, width, height)
